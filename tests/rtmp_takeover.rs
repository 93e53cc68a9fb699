//! A second publisher on the same key takes the stream over: the first is disconnected and the
//! players carry on with the second one's frames, timestamps still monotonic.

mod common;

use common::flv;
use common::*;

#[test]
fn second_publisher_takes_over_and_players_continue() {
    let s = Server::start(&["--play_wait_timeout", "20"]);
    let dir = scratch_dir();
    let key = s.key_for("movie");
    let publish_url = s.rtmp_url(&format!("live/{key}"));
    let mut player = Recorder::start(
        PlayerKind::Rtmpdump,
        &s.rtmp_url("live/movie"),
        dir.path(),
        "player",
    );
    wait_players(&s, 1);
    let a_src = media_tags(Media::Av);
    let mut a = ffmpeg_publish(&media(Media::Av), &publish_url);
    // B comes in 3 s into A's stream, by what the server got from A.
    wait_published_frames(&s, "live/movie", &a_src, 75);
    let mut b = ffmpeg_publish(&media(Media::AvAlt), &publish_url);

    // Run to its end, A would exit successfully; kicked, it fails on the closed connection.
    let a_status = a.wait_exit(PUBLISH_TIMEOUT);
    assert!(
        !a_status.success(),
        "publisher A was not disconnected but ran to its end (exit {a_status})"
    );
    assert!(
        player.proc.try_status().is_none(),
        "the player was disconnected by the takeover"
    );
    b.wait_success(PUBLISH_TIMEOUT);

    let got = player.finish();
    let b_src = media_tags(Media::AvAlt);
    let (av, bv) = (flv::video_frames(&a_src), flv::video_frames(&b_src));
    let rv = flv::video_frames(&got);

    let (a_start, a_len) = flv::contiguous_run(&av, &rv, 0).expect("first frame is not A's");
    assert_eq!(a_start, 0, "A's frames from the start");
    assert!(
        a_len >= 40,
        "only {a_len} of A's frames before the takeover"
    );
    let (b_start, b_len) = flv::contiguous_run(&bv, &rv, a_len).unwrap_or_else(|| {
        panic!(
            "after {a_len} of A's frames, received frame {:?} is not one of B's",
            rv.get(a_len)
        )
    });
    assert!(
        bv[b_start].is_keyframe(),
        "B's part starts at a non-keyframe {b_start}"
    );
    assert_eq!(
        a_len + b_len,
        rv.len(),
        "frames after B's contiguous run (A {a_len}, B {b_start}+{b_len}, total {})",
        rv.len()
    );
    assert_eq!(b_start + b_len, bv.len(), "B's frames missing at the end");
    assert!(
        rv.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
        "video timestamps go backwards across the takeover"
    );
    let ra = flv::audio_frames(&got);
    assert!(
        ra.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
        "audio timestamps go backwards across the takeover"
    );
    let b_audio = flv::audio_frames(&b_src);
    let last_b_audio = b_audio.last().unwrap();
    assert!(
        ra.iter().any(|t| t.data == last_b_audio.data),
        "B's audio did not reach the player"
    );
}
