package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// mintJWT is the jwt subcommand: it prints one HS256 token for -auth jwt,
// with sub, iat, exp and, if -role is given, role, signed with the secret the server would read —
// -jwt-secret, else HUBBUB_JWT_SECRET, else jwt-secret in the -config
// file — so a developer can connect to a jwt-mode server without a token
// issuer of their own. It prints only the token, so that
// TOKEN=$(hubbub jwt -sub alice) works.
func mintJWT(args []string, c cmdIO) error {
	fs := newSubFlagSet("jwt", c.stderr,
		"prints an HS256 token for -auth jwt, signed with the server's secret: -jwt-secret,\n"+
			"else HUBBUB_JWT_SECRET, else jwt-secret in the -config file (or HUBBUB_CONFIG)")
	sub := fs.String("sub", "", "the user name the token carries (required)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	roleName := fs.String("role", "", "the role claim: admin or moderator (default none)")
	fs.String("jwt-secret", "", "HS256 key, as the server's -jwt-secret (prefer HUBBUB_JWT_SECRET)")
	fs.String("config", "", "read jwt-secret from this configuration file, as the server does (or HUBBUB_CONFIG)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	// The server's own parsing finds the secret, so that both read it
	// from the same place with the same precedence.
	var server []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "jwt-secret" || f.Name == "config" {
			server = append(server, "-"+f.Name+"="+f.Value.String())
		}
	})
	cfg, err := parseFlags(server, c.getenv, c.stderr)
	if err != nil {
		return err
	}
	switch {
	case *sub == "":
		return errors.New("-sub NAME is required: the user name the token carries")
	case !validName(*sub):
		return fmt.Errorf("-sub %q: %s", truncate(*sub, 40), nameRule)
	case *ttl <= 0:
		return fmt.Errorf("-ttl %v: want a positive duration such as 1h", *ttl)
	case *roleName != "":
		if _, err := parseRole(*roleName); err != nil {
			return fmt.Errorf("-role: %w", err)
		}
	}
	switch {
	case len(cfg.JWTSecret) < minJWTSecret:
		return fmt.Errorf("no usable secret: set HUBBUB_JWT_SECRET (or -jwt-secret, or jwt-secret in the -config file) "+
			"to the server's secret of at least %d bytes; got %d", minJWTSecret, len(cfg.JWTSecret))
	}
	now := c.now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwtClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   *sub,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(*ttl)),
		},
		Role: *roleName,
	}).SignedString([]byte(cfg.JWTSecret))
	if err != nil {
		return fmt.Errorf("sign token: %w", err)
	}
	_, err = fmt.Fprintln(c.stdout, tok)
	return err
}
