//! Router over real executors: 2 data shards + control.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use common::{collect, stop_and_join};
use shards::{Incoming, RouterError, Runtime, RuntimeConfig, ShardCtx};

const SEQ_COUNT: u64 = 10_000;

#[derive(Debug, Clone, PartialEq)]
enum Msg {
    Ping(u64),
    Pong {
        from: usize,
        n: u64,
    },
    Note(String),
    Seq(u64),
    /// A request the handler drops without replying.
    Ignore,
    /// A request the handler keeps without replying (to exercise timeouts).
    Hold,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Report {
    Pong {
        at: usize,
        to: usize,
        from: usize,
    },
    Note {
        at: usize,
        from: usize,
        text: String,
    },
    SeqDone {
        at: usize,
        count: u64,
    },
    Errors {
        at: usize,
        ok: bool,
    },
}

/// The same handler on every shard: answers pings, reports notes, checks sequence order.
fn install_handler(ctx: &ShardCtx<Msg>, report: crossbeam_channel::Sender<Report>) {
    let id = ctx.id;
    let expected = Rc::new(Cell::new(0u64));
    let held: Rc<RefCell<Vec<Incoming<Msg>>>> = Rc::default();
    ctx.router.serve(move |inc: Incoming<Msg>| match inc.msg {
        Msg::Ping(n) => inc.reply(Msg::Pong { from: id, n }),
        Msg::Note(ref text) => report
            .send(Report::Note {
                at: id,
                from: inc.from,
                text: text.clone(),
            })
            .unwrap(),
        Msg::Seq(n) => {
            assert_eq!(n, expected.get(), "out of order on shard {id}");
            expected.set(n + 1);
            if n + 1 == SEQ_COUNT {
                report
                    .send(Report::SeqDone {
                        at: id,
                        count: n + 1,
                    })
                    .unwrap();
            }
        }
        Msg::Ignore => drop(inc),
        Msg::Hold => held.borrow_mut().push(inc),
        Msg::Pong { .. } => panic!("pong arrives as a reply, never through the handler"),
    });
}

async fn ping(ctx: &ShardCtx<Msg>, to: usize, report: &crossbeam_channel::Sender<Report>) {
    let n = (ctx.id * 100 + to) as u64;
    match ctx.router.request(to, Msg::Ping(n)).await {
        Ok(Msg::Pong { from, n: got }) => {
            assert_eq!(got, n);
            report
                .send(Report::Pong {
                    at: ctx.id,
                    to,
                    from,
                })
                .unwrap();
        }
        other => panic!("shard {} ping {to}: {other:?}", ctx.id),
    }
}

#[test]
fn request_reply_broadcast_order_and_self_send() {
    let (tx, rx) = crossbeam_channel::unbounded::<Report>();
    let control_tx = tx.clone();
    let handle = Runtime::start(
        RuntimeConfig {
            shards: 2,
            // Small on purpose: 10k messages must go through backpressure, not a big buffer.
            channel_capacity: 8,
        },
        move |ctx: ShardCtx<Msg>| {
            let tx = tx.clone();
            async move {
                install_handler(&ctx, tx.clone());
                let other = 1 - ctx.id;
                ping(&ctx, other, &tx).await;
                ping(&ctx, ctx.control_id, &tx).await;
                ping(&ctx, ctx.id, &tx).await;
                // Self-send, both forms.
                ctx.router
                    .send(ctx.id, Msg::Note(format!("self-{}", ctx.id)))
                    .await
                    .unwrap();
                ctx.router
                    .try_send(ctx.id, Msg::Note(format!("try-self-{}", ctx.id)))
                    .unwrap();
                if ctx.id == 0 {
                    for i in 0..SEQ_COUNT {
                        ctx.router.send(1, Msg::Seq(i)).await.unwrap();
                    }
                }
                ctx.stop.wait().await;
            }
        },
        move |ctx: ShardCtx<Msg>| async move {
            let tx = control_tx;
            install_handler(&ctx, tx.clone());
            ping(&ctx, 0, &tx).await;
            ping(&ctx, 1, &tx).await;
            let delivered = ctx.router.broadcast(Msg::Note("hello".into())).await;
            assert_eq!(delivered, 2);

            // Error paths.
            let mut ok = true;
            ok &= ctx.router.request(9, Msg::Ping(0)).await == Err(RouterError::InvalidPeer(9));
            ok &= ctx.router.request(0, Msg::Ignore).await == Err(RouterError::NoReply);
            ok &= ctx.router.request(ctx.id, Msg::Ignore).await == Err(RouterError::NoReply);
            ok &= ctx
                .router
                .request_timeout(1, Msg::Hold, Duration::from_millis(50))
                .await
                == Err(RouterError::Timeout);
            ok &= ctx.router.send(9, Msg::Note("x".into())).await == Err(Msg::Note("x".into()));
            ok &= ctx.router.try_send(9, Msg::Seq(1)) == Err(Msg::Seq(1));
            // The router still works after a timed-out request.
            ok &= matches!(
                ctx.router
                    .request_timeout(1, Msg::Ping(7), Duration::from_secs(5))
                    .await,
                Ok(Msg::Pong { from: 1, n: 7 })
            );
            tx.send(Report::Errors { at: ctx.id, ok }).unwrap();
            ctx.stop.wait().await;
        },
    )
    .expect("start");

    // 2 pings from each data shard to others + 1 self ping = 3 each (6), control pings 2,
    // 2 self notes per data shard (4), 2 broadcast notes, 1 SeqDone, 1 Errors.
    let mut got = collect(&rx, 6 + 2 + 4 + 2 + 1 + 1, Duration::from_secs(30));
    got.sort();
    let mut want = vec![
        Report::Pong {
            at: 0,
            to: 1,
            from: 1,
        },
        Report::Pong {
            at: 0,
            to: 2,
            from: 2,
        },
        Report::Pong {
            at: 0,
            to: 0,
            from: 0,
        },
        Report::Pong {
            at: 1,
            to: 0,
            from: 0,
        },
        Report::Pong {
            at: 1,
            to: 2,
            from: 2,
        },
        Report::Pong {
            at: 1,
            to: 1,
            from: 1,
        },
        Report::Pong {
            at: 2,
            to: 0,
            from: 0,
        },
        Report::Pong {
            at: 2,
            to: 1,
            from: 1,
        },
        Report::Note {
            at: 0,
            from: 0,
            text: "self-0".into(),
        },
        Report::Note {
            at: 0,
            from: 0,
            text: "try-self-0".into(),
        },
        Report::Note {
            at: 1,
            from: 1,
            text: "self-1".into(),
        },
        Report::Note {
            at: 1,
            from: 1,
            text: "try-self-1".into(),
        },
        Report::Note {
            at: 0,
            from: 2,
            text: "hello".into(),
        },
        Report::Note {
            at: 1,
            from: 2,
            text: "hello".into(),
        },
        Report::SeqDone {
            at: 1,
            count: SEQ_COUNT,
        },
        Report::Errors { at: 2, ok: true },
    ];
    want.sort();
    assert_eq!(got, want);
    // Nothing unexpected (e.g. a broadcast echo to the sender) arrives afterwards.
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    stop_and_join(handle, Duration::from_secs(10)).expect("clean join");
}

#[test]
fn requests_to_a_finished_shard_fail_instead_of_hanging() {
    let (tx, rx) = crossbeam_channel::unbounded::<Result<Msg, RouterError>>();
    let handle = Runtime::start(
        RuntimeConfig {
            shards: 1,
            channel_capacity: 4,
        },
        // The data shard ends at once: its channels close.
        |_ctx: ShardCtx<Msg>| async move {},
        move |ctx: ShardCtx<Msg>| async move {
            // Let shard 0 finish first.
            glommio::timer::sleep(Duration::from_millis(100)).await;
            let r = ctx
                .router
                .request_timeout(0, Msg::Ping(1), Duration::from_secs(5))
                .await;
            tx.send(r).unwrap();
        },
    )
    .expect("start");
    let got = collect(&rx, 1, Duration::from_secs(10));
    assert_eq!(got[0], Err(RouterError::Closed));
    stop_and_join(handle, Duration::from_secs(10)).expect("clean join");
}

#[test]
fn replies_arrive_before_serve_and_queued_messages_wait_for_it() {
    let (tx, rx) = crossbeam_channel::unbounded::<String>();
    let tx2 = tx.clone();
    let handle = Runtime::start(
        RuntimeConfig {
            shards: 1,
            channel_capacity: 4,
        },
        move |ctx: ShardCtx<Msg>| {
            let tx = tx.clone();
            async move {
                // Requests work before this shard installs a handler.
                let r = ctx.router.request(ctx.control_id, Msg::Ping(5)).await;
                assert_eq!(r, Ok(Msg::Pong { from: 1, n: 5 }));
                // A note sent by control before serve() is delivered once we serve.
                glommio::timer::sleep(Duration::from_millis(100)).await;
                ctx.router.serve(move |inc: Incoming<Msg>| {
                    if let Msg::Note(t) = inc.msg {
                        tx.send(t).unwrap();
                    }
                });
                ctx.stop.wait().await;
            }
        },
        move |ctx: ShardCtx<Msg>| async move {
            let _ = &tx2;
            ctx.router.serve(|inc: Incoming<Msg>| {
                if let Msg::Ping(n) = inc.msg {
                    inc.reply(Msg::Pong { from: 1, n });
                }
            });
            ctx.router.send(0, Msg::Note("early".into())).await.unwrap();
            ctx.stop.wait().await;
        },
    )
    .expect("start");
    assert_eq!(
        collect(&rx, 1, Duration::from_secs(10)),
        vec!["early".to_string()]
    );
    stop_and_join(handle, Duration::from_secs(10)).expect("clean join");
}
