use std::io;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livego::config::{Config, ConfigError};
use livego::engine::ShardMsg;

fn main() -> ExitCode {
    // Held until the wait below, so a SIGINT/SIGTERM sent while the server starts is pending
    // there rather than killing the process mid-start (the runtime restores this mask).
    let held = match shards::TerminationSignalsHeld::block_termination() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cannot block SIGINT/SIGTERM: {e}");
            return ExitCode::from(1);
        }
    };
    let cfg = match Config::from_process() {
        Ok(c) => Arc::new(c),
        Err(ConfigError::Help(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg.level);
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    if cfg.enable_rtmps {
        eprintln!("config error: enable_rtmps: RTMPS is not supported by this build yet");
        return ExitCode::from(2);
    }
    if let Err(e) = check_listen_addrs(&cfg) {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    let runtime = shards::RuntimeConfig {
        shards: cfg.shards.count,
        channel_capacity: 1024,
    };
    let data_cfg = cfg.clone();
    let control_cfg = cfg.clone();
    let handle = match shards::Runtime::start::<ShardMsg, _, _, _, _>(
        runtime,
        move |ctx| livego::serve::data_shard_main(ctx, data_cfg.clone()),
        move |ctx| livego::serve::control_main(ctx, control_cfg),
    ) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cannot start the shards: {e}");
            return ExitCode::from(1);
        }
    };
    match handle.wait_for_termination_signal() {
        Ok(shards::Termination::Signal(_)) => {}
        // join() below names the shard and makes the exit code 1.
        Ok(shards::Termination::Stopped) => tracing::error!("a shard failed; stopping"),
        Err(e) => tracing::error!("waiting for signals failed: {e}"),
    }
    // A second Ctrl-C during a slow shutdown stops the process the default way.
    drop(held);
    tracing::info!("shutting down");
    handle.stop();
    let joined = handle.join();
    // Recordings in progress are finished (buffered tags written, header and metadata
    // patched), not left truncated by the exit.
    if !livego::flv::recorder::RecorderHandle::shutdown(Duration::from_secs(10)) {
        tracing::error!("flv recordings not finalised within 10 s of shutdown");
    }
    match joined {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("a shard failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// How long a busy port is retried at start. A process that was just killed keeps its
/// listening sockets for a moment (io_uring tears its rings, and the sockets they hold, down
/// asynchronously), so a supervisor restarting us at once would otherwise find the ports of
/// the dead process still taken. nginx retries its binds for the same reason.
const BUSY_PORT_RETRY_FOR: Duration = Duration::from_secs(2);
const BUSY_PORT_RETRY_EVERY: Duration = Duration::from_millis(100);

/// Every data shard binds its ports with SO_REUSEPORT, which would let this process silently
/// share a port with another server (or with one of its own listeners): the kernel would then
/// spread connections between them. A plain bind first makes such a conflict a clear error.
fn check_listen_addrs(cfg: &Config) -> Result<(), String> {
    let mut addrs = vec![
        ("rtmp_addr", cfg.rtmp_addr),
        ("httpflv_addr", cfg.httpflv_addr),
        ("hls_addr", cfg.hls_addr),
    ];
    if let Some(api) = cfg.api_addr {
        addrs.push(("api_addr", api));
    }
    for (i, (name, addr)) in addrs.iter().enumerate() {
        if addr.port() == 0 {
            continue;
        }
        if let Some((other, _)) = addrs[..i].iter().find(|(_, a)| a == addr) {
            return Err(format!("config error: {name}: {addr} is also {other}"));
        }
        let deadline = Instant::now() + BUSY_PORT_RETRY_FOR;
        let mut warned = false;
        loop {
            match std::net::TcpListener::bind(addr) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                    if !std::mem::replace(&mut warned, true) {
                        tracing::warn!(
                            "{addr} ({name}) is in use; retrying for {BUSY_PORT_RETRY_FOR:?}"
                        );
                    }
                    std::thread::sleep(BUSY_PORT_RETRY_EVERY);
                }
                Err(e) => return Err(format!("cannot listen on {addr} ({name}): {e}")),
            }
        }
    }
    Ok(())
}

fn init_logging(level: &str) {
    let level = match level {
        "trace" => tracing::Level::TRACE,
        "debug" => tracing::Level::DEBUG,
        "warn" | "warning" => tracing::Level::WARN,
        "error" | "fatal" | "panic" => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
