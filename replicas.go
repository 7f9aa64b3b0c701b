package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// autoReplicas is how many JetStream servers keep each stream when the
// NATS cluster can place that many and -nats-replicas leaves the choice to
// the node: enough to lose any one server and still have a majority.
const autoReplicas = 3

// placementCodes are JetStream's answers when it cannot place a stream's
// replicas: no suitable peers (10005), not enough resources (10023), or a
// server that is not part of a JetStream cluster (10074).
var placementCodes = []jetstream.ErrorCode{10005, 10023, 10074}

// cannotPlace reports whether err is JetStream saying that it has too few
// servers for the replicas asked for.
func cannotPlace(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && slices.Contains(placementCodes, apiErr.ErrorCode)
}

// replicaRecheck is how often a node that chose 1 replica because its NATS
// cluster could not place 3 asks again: a cluster that is still forming,
// or short of a server, gains them back.
const replicaRecheck = 30 * time.Second

// replicas returns how many replicas this node gives the streams and the
// bucket it creates. It decides on the first call made while connected,
// and logs its choice:
//   - -nats-replicas, if set;
//   - 1 when the NATS server is not clustered;
//   - otherwise autoReplicas if JetStream accepts the moderation bucket with
//     that many (creating it, or raising its replicas), and 1 if JetStream
//     answers that it cannot place them. That answer is asked again every
//     replicaRecheck, and the node moves to autoReplicas once JetStream
//     accepts them; streams made meanwhile are raised when the node next
//     opens them (ensureStream).
//
// Any other failure leaves the choice open for the next call.
func (b *natsBroker) replicas(ctx context.Context) (int, error) {
	b.replMu.Lock()
	defer b.replMu.Unlock()
	if b.repl > 0 && (!b.replShort || time.Since(b.replAt) < replicaRecheck) {
		return b.repl, nil
	}
	if !b.nc.IsConnected() {
		if b.repl > 0 {
			return b.repl, nil
		}
		return 0, errBrokerDown
	}
	cluster := b.nc.ConnectedClusterName()
	switch {
	case b.opt.Replicas > 0:
		b.repl = b.opt.Replicas
		b.log.Info("JetStream replicas set by -nats-replicas", "replicas", b.repl)
	case cluster == "":
		b.repl = 1
		b.log.Info("NATS server is not clustered; streams keep 1 replica", "replicas", 1)
	default:
		_, err := b.makeBucket(ctx, autoReplicas)
		switch {
		case err == nil:
			if b.replShort {
				b.log.Info("NATS cluster places 3 replicas now; new streams keep 3", "replicas", autoReplicas, "cluster", cluster)
			} else {
				b.log.Info("NATS cluster places 3 replicas; streams keep 3", "replicas", autoReplicas, "cluster", cluster)
			}
			b.repl, b.replShort = autoReplicas, false
		case cannotPlace(err):
			if !b.replShort {
				b.log.Warn("NATS cluster cannot place 3 replicas (fewer than 3 JetStream servers); streams keep 1 until it can; -nats-replicas overrides",
					"replicas", 1, "cluster", cluster, "err", err)
			}
			b.repl, b.replShort, b.replAt = 1, true, time.Now()
		case b.repl > 0: // asking again failed otherwise: keep the choice
			b.replAt = time.Now()
		default:
			return 0, fmt.Errorf("choose JetStream replicas: %w", err)
		}
	}
	return b.repl, nil
}

// raiseReplicas reports whether an existing stream with cur replicas
// should be updated to want. A count set by -nats-replicas is applied
// either way; a chosen one only raises, so that a node that started while
// the NATS cluster was short of servers never takes replicas away from
// streams other nodes made.
func (b *natsBroker) raiseReplicas(cur, want int) bool {
	if b.opt.Replicas > 0 {
		return cur != want
	}
	return want > cur
}

// makeBucket returns the moderation bucket, creating it with n replicas
// if it does not exist, or updating its replicas as raiseReplicas says.
func (b *natsBroker) makeBucket(ctx context.Context, n int) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, setupWait)
	defer cancel()
	cfg := jetstream.KeyValueConfig{
		Bucket:      b.bucketName(),
		Description: "hubbub moderation: bans, mutes, slow mode, deleted messages",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    n,
	}
	kv, err := b.js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = b.js.CreateKeyValue(ctx, cfg)
		if !errors.Is(err, jetstream.ErrBucketExists) {
			return kv, err
		}
		kv, err = b.js.KeyValue(ctx, cfg.Bucket) // another node made it meanwhile
	}
	if err != nil {
		return nil, err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, err
	}
	if s, ok := st.(*jetstream.KeyValueBucketStatus); ok && b.raiseReplicas(s.StreamInfo().Config.Replicas, n) {
		return b.js.UpdateKeyValue(ctx, cfg)
	}
	return kv, nil
}
