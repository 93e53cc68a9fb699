use super::*;
use crate::rtmp::chunk::{ChunkDecoder, ChunkLimits};
use crate::rtmp::command::StatusInfo;
use crate::rtmp::handshake::HANDSHAKE_SIZE;
use proptest::prelude::*;

fn zero_rng() -> Box<RandomFill> {
    Box::new(|b: &mut [u8]| b.fill(0x5A))
}

/// A hand-driven client: writes chunks with `encode_message`, reads the server's output with
/// its own decoder (following Set Chunk Size).
struct Peer {
    s: ServerSession,
    reader: ChunkDecoder,
}

impl Peer {
    fn new() -> Self {
        Peer {
            s: ServerSession::with_random(ServerConfig::default(), zero_rng()),
            reader: ChunkDecoder::new(ChunkLimits::default()),
        }
    }

    /// Simple handshake; returns the S0S1S2 bytes.
    fn handshake(&mut self) -> Vec<u8> {
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0u8; HANDSHAKE_SIZE]);
        self.s.feed(&c0c1).unwrap();
        let out = self.s.take_output().unwrap().to_vec();
        self.s.feed(&[0u8; HANDSHAKE_SIZE]).unwrap();
        assert!(self.s.handshake_done());
        out
    }

    fn send(&mut self, csid: u32, m: &Message) -> Result<(), SessionError> {
        let mut b = BytesMut::new();
        encode_message(&mut b, 128, csid, m);
        self.s.feed(&b)
    }

    fn cmd(
        &mut self,
        stream_id: u32,
        name: &str,
        txn: f64,
        vals: &[Value],
    ) -> Result<(), SessionError> {
        self.send(3, &command::build(stream_id, name, txn, vals))
    }

    /// (csid, message) pairs the server wrote since the last call.
    fn read(&mut self) -> Vec<(u32, Message)> {
        let mut v = Vec::new();
        if let Some(o) = self.s.take_output() {
            self.reader.push(&o);
        }
        while let Some((csid, m)) = self.reader.next_with_csid().unwrap() {
            if m.type_id == 1 {
                let n =
                    u32::from_be_bytes([m.payload[0], m.payload[1], m.payload[2], m.payload[3]]);
                self.reader.set_chunk_size(n).unwrap();
            }
            v.push((csid, m));
        }
        v
    }

    fn events(&mut self) -> Vec<ServerEvent> {
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }

    fn connect(&mut self) {
        self.handshake();
        self.cmd(
            0,
            "connect",
            1.0,
            &[amf0::object(&[
                ("app", "live".into()),
                ("flashVer", "FMLE/3.0".into()),
                ("tcUrl", "rtmp://h/live".into()),
                ("objectEncoding", Value::Number(0.0)),
            ])],
        )
        .unwrap();
        assert!(matches!(self.events()[..], [ServerEvent::Connect { .. }]));
        self.s.accept_connect().unwrap();
        self.read();
    }

    fn publish(&mut self, name: &str) {
        self.connect();
        self.cmd(0, "createStream", 2.0, &[Value::Null]).unwrap();
        self.cmd(
            1,
            "publish",
            3.0,
            &[Value::Null, name.into(), "live".into()],
        )
        .unwrap();
        assert!(matches!(self.events()[..], [ServerEvent::Publish { .. }]));
        self.s.accept_publish().unwrap();
        self.read();
    }
}

fn status_of(m: &Message) -> StatusInfo {
    let c = command::parse(m).unwrap();
    assert_eq!(c.name, "onStatus");
    StatusInfo::from_value(&c.args[0])
}

#[test]
fn simple_handshake_then_connect_reply_bytes() {
    let mut p = Peer::new();
    let s012 = p.handshake();
    assert_eq!(s012.len(), 1 + 2 * HANDSHAKE_SIZE);
    p.cmd(
        0,
        "connect",
        1.0,
        &[amf0::object(&[
            ("app", "live".into()),
            ("tcUrl", "rtmp://h:1935/live".into()),
            ("objectEncoding", Value::Number(3.0)),
        ])],
    )
    .unwrap();
    assert_eq!(
        p.events(),
        vec![ServerEvent::Connect {
            app: "live".into(),
            tc_url: Some("rtmp://h:1935/live".into()),
            flash_ver: None,
            object_encoding: 3.0
        }]
    );
    assert!(p.s.take_output().is_none(), "nothing before the decision");
    p.s.accept_connect().unwrap();
    let out = p.s.take_output().unwrap();
    // Window Ack Size 2,500,000, Set Peer Bandwidth 2,500,000 dynamic, Set Chunk Size 4096,
    // all type-0 on chunk stream 2.
    assert_eq!(
        &out[..16 + 17 + 16],
        &[
            0x02, 0, 0, 0, 0, 0, 4, 5, 0, 0, 0, 0, 0x00, 0x26, 0x25, 0xA0, //
            0x02, 0, 0, 0, 0, 0, 5, 6, 0, 0, 0, 0, 0x00, 0x26, 0x25, 0xA0, 2, //
            0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x10, 0,
        ][..]
    );
    p.reader.push(&out);
    let mut msgs = Vec::new();
    while let Some(m) = p.reader.next_with_csid().unwrap() {
        if m.1.type_id == 1 {
            p.reader.set_chunk_size(4096).unwrap();
        }
        msgs.push(m);
    }
    assert_eq!(msgs.len(), 4);
    let (csid, result) = &msgs[3];
    assert_eq!(*csid, 3);
    let c = command::parse(result).unwrap();
    assert_eq!((c.name.as_str(), c.transaction_id), ("_result", 1.0));
    assert_eq!(
        c.object,
        amf0::object(&[
            ("fmsVer", "FMS/3,0,1,123".into()),
            ("capabilities", Value::Number(31.0)),
        ])
    );
    assert_eq!(
        c.args,
        vec![amf0::object(&[
            ("level", "status".into()),
            ("code", "NetConnection.Connect.Success".into()),
            ("description", "Connection succeeded.".into()),
            ("objectEncoding", Value::Number(3.0)),
        ])]
    );
    assert_eq!(p.s.out_chunk_size(), 4096);
}

#[test]
fn publish_flow_and_media() {
    let mut p = Peer::new();
    p.connect();
    p.cmd(0, "releaseStream", 2.0, &[Value::Null, "key?x=1".into()])
        .unwrap();
    p.cmd(0, "FCPublish", 3.0, &[Value::Null, "key?x=1".into()])
        .unwrap();
    p.cmd(0, "createStream", 4.0, &[Value::Null]).unwrap();
    let r = p.read();
    assert_eq!(r.len(), 1, "only createStream is answered");
    let c = command::parse(&r[0].1).unwrap();
    assert_eq!(c.name, "_result");
    assert_eq!(c.transaction_id, 4.0);
    assert_eq!(c.object, Value::Null);
    assert_eq!(c.args, vec![Value::Number(1.0)]);

    p.cmd(
        1,
        "publish",
        5.0,
        &[Value::Null, "key?x=1".into(), "live".into()],
    )
    .unwrap();
    assert_eq!(
        p.events(),
        vec![ServerEvent::Publish {
            stream_id: 1,
            name: "key".into(),
            query: Some("x=1".into()),
            kind: "live".into()
        }]
    );
    p.s.accept_publish().unwrap();
    let r = p.read();
    assert_eq!(r[0].0, 2);
    assert_eq!(&r[0].1.payload[..], &[0, 0, 0, 0, 0, 1], "StreamBegin(1)");
    assert_eq!((r[1].0, r[1].1.stream_id), (3, 1));
    assert_eq!(status_of(&r[1].1).code, "NetStream.Publish.Start");
    assert_eq!(status_of(&r[1].1).description, "Start publishing.");
    assert!(p.s.is_publishing());

    let video = Message {
        type_id: 9,
        timestamp: 40,
        stream_id: 1,
        payload: Bytes::from(vec![0x17u8; 300]),
    };
    p.send(6, &video).unwrap();
    let mut meta = BytesMut::new();
    amf0::encode(&mut meta, &"@setDataFrame".into());
    let body = amf0::encode_all(&["onMetaData".into(), Value::EcmaArray(vec![])]);
    meta.extend_from_slice(&body);
    p.send(
        5,
        &Message {
            type_id: 18,
            timestamp: 0,
            stream_id: 1,
            payload: meta.freeze(),
        },
    )
    .unwrap();
    let ev = p.events();
    assert_eq!(ev[0], ServerEvent::Media(video));
    match &ev[1] {
        ServerEvent::Media(m) => assert_eq!(&m.payload[..], &body[..]),
        e => panic!("{e:?}"),
    }
    p.cmd(0, "FCUnpublish", 6.0, &[Value::Null, "key".into()])
        .unwrap();
    p.cmd(0, "deleteStream", 7.0, &[Value::Null, Value::Number(1.0)])
        .unwrap();
    assert_eq!(p.events(), vec![ServerEvent::Unpublish { stream_id: 1 }]);
    // A straggling frame after unpublish is dropped, not an error.
    p.send(
        4,
        &Message {
            type_id: 8,
            timestamp: 50,
            stream_id: 1,
            payload: Bytes::from_static(&[0xAF, 1]),
        },
    )
    .unwrap();
    assert!(p.events().is_empty());
}

#[test]
fn play_flow_replies_in_livego_order() {
    let mut p = Peer::new();
    p.connect();
    p.cmd(0, "createStream", 2.0, &[Value::Null]).unwrap();
    p.read();
    p.cmd(1, "getStreamLength", 3.0, &[Value::Null, "room".into()])
        .unwrap();
    p.cmd(
        1,
        "play",
        4.0,
        &[Value::Null, "room?t=1".into(), Value::Number(-2000.0)],
    )
    .unwrap();
    assert_eq!(
        p.events(),
        vec![ServerEvent::Play {
            stream_id: 1,
            name: "room".into(),
            query: Some("t=1".into())
        }]
    );
    p.s.accept_play().unwrap();
    let r = p.read();
    assert_eq!(
        &r[0].1.payload[..],
        &[0, 4, 0, 0, 0, 1],
        "StreamIsRecorded(1)"
    );
    assert_eq!(&r[1].1.payload[..], &[0, 0, 0, 0, 0, 1], "StreamBegin(1)");
    let codes: Vec<(String, String)> = r[2..]
        .iter()
        .map(|(_, m)| {
            let s = status_of(m);
            (s.code, s.description)
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (
                "NetStream.Play.Reset".into(),
                "Playing and resetting stream.".into()
            ),
            (
                "NetStream.Play.Start".into(),
                "Started playing stream.".into()
            ),
            (
                "NetStream.Data.Start".into(),
                "Started playing stream.".into()
            ),
            (
                "NetStream.Play.PublishNotify".into(),
                "Started playing notify.".into()
            ),
        ]
    );
    p.s.play_unpublish_notify();
    let r = p.read();
    assert_eq!(status_of(&r[0].1).code, "NetStream.Play.UnpublishNotify");
    assert_eq!(&r[1].1.payload[..], &[0, 1, 0, 0, 0, 1], "StreamEOF(1)");
    p.s.play_publish_notify();
    let r = p.read();
    assert_eq!(&r[0].1.payload[..], &[0, 0, 0, 0, 0, 1]);
    assert_eq!(status_of(&r[1].1).code, "NetStream.Play.PublishNotify");
    p.cmd(1, "closeStream", 0.0, &[Value::Null]).unwrap();
    assert_eq!(p.events(), vec![ServerEvent::CloseStream { stream_id: 1 }]);
}

#[test]
fn rejections() {
    let mut p = Peer::new();
    p.handshake();
    p.cmd(
        0,
        "connect",
        1.0,
        &[amf0::object(&[("app", "nope".into())])],
    )
    .unwrap();
    p.events();
    p.s.reject_connect("no such app").unwrap();
    let r = p.read();
    let c = command::parse(&r[0].1).unwrap();
    assert_eq!(c.name, "_error");
    let info = StatusInfo::from_value(&c.args[0]);
    assert_eq!(
        (
            info.level.as_str(),
            info.code.as_str(),
            info.description.as_str()
        ),
        ("error", "NetConnection.Connect.Rejected", "no such app")
    );
    // Further input is ignored.
    p.cmd(0, "createStream", 2.0, &[Value::Null]).unwrap();
    assert!(p.read().is_empty());

    let mut p = Peer::new();
    p.connect();
    p.cmd(1, "publish", 2.0, &[Value::Null, "bad".into()])
        .unwrap();
    p.events();
    p.s.reject_publish("NetStream.Publish.BadName", "bad key")
        .unwrap();
    let s = status_of(&p.read()[0].1);
    assert_eq!(
        (s.level.as_str(), s.code.as_str()),
        ("error", "NetStream.Publish.BadName")
    );
    // Another attempt on the same connection is allowed.
    p.cmd(1, "play", 3.0, &[Value::Null, "room".into()])
        .unwrap();
    p.events();
    p.s.reject_play("NetStream.Play.StreamNotFound", "gone")
        .unwrap();
    assert_eq!(
        status_of(&p.read()[0].1).code,
        "NetStream.Play.StreamNotFound"
    );
    assert!(p.s.accept_play().is_err(), "nothing pending");
}

#[test]
fn pipelined_commands_wait_for_the_decision() {
    let mut p = Peer::new();
    p.handshake();
    let mut b = BytesMut::new();
    let connect = command::build(
        0,
        "connect",
        1.0,
        &[amf0::object(&[("app", "live".into())])],
    );
    encode_message(&mut b, 128, 3, &connect);
    encode_message(
        &mut b,
        128,
        3,
        &command::build(0, "createStream", 2.0, &[Value::Null]),
    );
    encode_message(
        &mut b,
        128,
        8,
        &command::build(1, "play", 3.0, &[Value::Null, "room".into()]),
    );
    p.s.feed(&b).unwrap();
    assert_eq!(p.events().len(), 1);
    assert!(p.s.is_waiting_decision());
    p.s.accept_connect().unwrap();
    let ev = p.events();
    assert!(matches!(ev[..], [ServerEvent::Play { .. }]));
    let r = p.read();
    let names: Vec<String> = r
        .iter()
        .filter(|(_, m)| m.type_id == 20)
        .map(|(_, m)| command::parse(m).unwrap().name)
        .collect();
    assert_eq!(names, vec!["_result", "_result"]);
    p.s.accept_play().unwrap();
    // Reply goes back on the request's chunk stream 8.
    assert!(p.read().iter().any(|(c, m)| *c == 8 && m.type_id == 20));
}

#[test]
fn state_violations_are_errors() {
    let mut p = Peer::new();
    p.handshake();
    let e = p
        .cmd(1, "publish", 1.0, &[Value::Null, "k".into()])
        .unwrap_err();
    assert_eq!(e.to_string(), "rtmp: publish before connect");

    let mut p = Peer::new();
    p.connect();
    let e = p.cmd(
        0,
        "connect",
        1.0,
        &[amf0::object(&[("app", "live".into())])],
    );
    assert!(e.is_err());

    let mut p = Peer::new();
    p.connect();
    let e = p.send(
        6,
        &Message {
            type_id: 9,
            timestamp: 0,
            stream_id: 1,
            payload: Bytes::from_static(&[0x17, 0]),
        },
    );
    assert_eq!(
        e.unwrap_err().to_string(),
        "rtmp: media message (type 9) before publish"
    );

    let mut p = Peer::new();
    p.publish("k");
    assert!(p.cmd(1, "play", 9.0, &[Value::Null, "r".into()]).is_err());
}

#[test]
fn bad_connect_arguments_are_errors_not_panics() {
    for obj in [
        Value::Null,
        amf0::object(&[("app", Value::Number(1.0))]),
        amf0::object(&[("tcUrl", "x".into())]),
        amf0::object(&[("app", "a".into()), ("tcUrl", Value::Boolean(true))]),
        amf0::object(&[("app", "a".into()), ("objectEncoding", "3".into())]),
    ] {
        let mut p = Peer::new();
        p.handshake();
        assert!(
            matches!(
                p.cmd(0, "connect", 1.0, std::slice::from_ref(&obj)),
                Err(SessionError::Protocol(_))
            ),
            "{obj:?}"
        );
    }
    let mut p = Peer::new();
    p.handshake();
    let e = p.send(
        3,
        &Message {
            type_id: 20,
            timestamp: 0,
            stream_id: 0,
            payload: Bytes::new(),
        },
    );
    assert!(matches!(e, Err(SessionError::Command(_))));
}

#[test]
fn amf3_command_form_connect() {
    let mut p = Peer::new();
    p.handshake();
    let c = command::build(
        0,
        "connect",
        1.0,
        &[amf0::object(&[("app", "live".into())])],
    );
    let mut payload = vec![0u8];
    payload.extend_from_slice(&c.payload);
    p.send(
        3,
        &Message {
            type_id: 17,
            payload: Bytes::from(payload),
            ..c
        },
    )
    .unwrap();
    assert!(matches!(&p.events()[..], [ServerEvent::Connect { app, .. }] if app == "live"));
}

#[test]
fn control_messages() {
    let mut p = Peer::new();
    p.connect();
    // Ping request -> ping response with the same timestamp.
    p.send(
        2,
        &control::user_control(&UserControlEvent::PingRequest(1234)),
    )
    .unwrap();
    let r = p.read();
    assert_eq!((r[0].0, r[0].1.type_id), (2, 4));
    assert_eq!(&r[0].1.payload[..], &[0, 7, 0, 0, 0x04, 0xD2]);
    // Set chunk size 0 is a violation.
    let e = p.send(2, &control::set_chunk_size(0)).unwrap_err();
    assert!(e.to_string().contains("invalid chunk size 0"), "{e}");

    // Window ack: acknowledgement carries the cumulative byte count.
    let mut p = Peer::new();
    p.connect();
    p.send(2, &control::window_ack_size(1000)).unwrap();
    let r = p.read();
    assert_eq!(r[0].1.type_id, 3);
    let seq = u32::from_be_bytes([
        r[0].1.payload[0],
        r[0].1.payload[1],
        r[0].1.payload[2],
        r[0].1.payload[3],
    ]);
    assert_eq!(u64::from(seq), p.s.bytes_received());
    p.send(2, &control::set_peer_bandwidth(5, 2)).unwrap();
    assert!(p.read().is_empty(), "less than a window since the last ack");

    // Peer's larger chunk size is followed.
    let mut p = Peer::new();
    p.connect();
    p.send(2, &control::set_chunk_size(4096)).unwrap();
    let mut b = BytesMut::new();
    encode_message(
        &mut b,
        4096,
        3,
        &command::build(
            0,
            "createStream",
            2.0,
            &[Value::Null, "x".repeat(300).into()],
        ),
    );
    p.s.feed(&b).unwrap();
    assert_eq!(p.read().len(), 1);
}

#[test]
fn bad_version_is_a_handshake_error() {
    let mut s = ServerSession::new(ServerConfig::default());
    let e = s.feed(b"POST / HTTP/1.1").unwrap_err();
    assert!(e
        .to_string()
        .starts_with("rtmp: handshake version=80 invalid"));
}

#[test]
fn session_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<ServerSession>();
}

proptest! {
    #[test]
    fn random_bytes_after_handshake_never_panic(
        b in prop::collection::vec(any::<u8>(), 0..2048),
        connect_first in any::<bool>(),
    ) {
        let mut p = Peer::new();
        if connect_first { p.connect(); } else { p.handshake(); }
        let _ = p.s.feed(&b);
        while p.s.poll_event().is_some() {}
        let _ = p.s.take_output();
    }
}

#[test]
fn overlong_names_are_errors() {
    let long = "n".repeat(MAX_NAME_LEN + 1);
    let mut p = Peer::new();
    p.handshake();
    let e = p
        .cmd(
            0,
            "connect",
            1.0,
            &[amf0::object(&[("app", long.as_str().into())])],
        )
        .unwrap_err();
    assert!(matches!(e, SessionError::Protocol(_)), "{e}");
    for verb in ["publish", "play"] {
        for name in [long.clone(), format!("k?{}", "q".repeat(MAX_QUERY_LEN + 1))] {
            let mut p = Peer::new();
            p.connect();
            p.cmd(0, "createStream", 2.0, &[Value::Null]).unwrap();
            let e = p
                .cmd(1, verb, 3.0, &[Value::Null, name.as_str().into()])
                .unwrap_err();
            assert!(e.to_string().contains("is longer than"), "{verb}: {e}");
        }
        // The longest accepted name still works.
        let mut p = Peer::new();
        p.connect();
        p.cmd(0, "createStream", 2.0, &[Value::Null]).unwrap();
        let name = format!("{}?{}", "n".repeat(MAX_NAME_LEN), "q".repeat(MAX_QUERY_LEN));
        p.cmd(1, verb, 3.0, &[Value::Null, name.as_str().into()])
            .unwrap();
        assert_eq!(p.events().len(), 1, "{verb}");
    }
}
