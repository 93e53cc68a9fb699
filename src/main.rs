use std::process::ExitCode;
use std::sync::Arc;

use livego::config::Config;
use livego::engine::ShardMsg;

fn main() -> ExitCode {
    let cfg = match Config::from_process() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg.level);
    if cfg.enable_rtmps {
        eprintln!("config error: enable_rtmps: RTMPS is not supported by this build yet");
        return ExitCode::from(2);
    }
    let runtime = shards::RuntimeConfig {
        shards: cfg.shards,
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
    handle.wait_for_termination_signal();
    tracing::info!("shutting down");
    handle.stop();
    match handle.join() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("a shard failed: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(level: &str) {
    let level = match level {
        "trace" => tracing::Level::TRACE,
        "debug" => tracing::Level::DEBUG,
        "warn" | "warning" => tracing::Level::WARN,
        "error" | "fatal" | "panic" => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
}
