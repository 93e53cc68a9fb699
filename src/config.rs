//! Configuration: livego.toml, flags with livego names, UPPER_SNAKE env overrides.
//!
//! Precedence follows livego (viper): an explicitly given flag beats the environment, which beats
//! the config file, which beats the built-in default. Every key keeps livego's name so existing
//! scripts, flags and environment variables carry over. Unlike viper, unknown keys and bad values
//! are rejected with a one-line error naming the key, because a silently ignored typo in a
//! streaming server's config is found only in production.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The config file read when `--config_file` is not given; when it is absent, livego's own
/// default `livego.yaml` next to it is read instead. The format follows the extension:
/// `.yaml`/`.yml`, `.json`, anything else TOML; the key names are livego's in all three.
pub const DEFAULT_CONFIG_FILE: &str = "livego.toml";

/// The whole server configuration, fully validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Path of the config file that was read (or would have been read when absent).
    pub config_file: PathBuf,
    pub rtmp_addr: SocketAddr,
    pub httpflv_addr: SocketAddr,
    pub hls_addr: SocketAddr,
    /// `None` when `api_addr` is empty: the API is disabled.
    pub api_addr: Option<SocketAddr>,
    /// Lower-case log level: panic, fatal, error, warn, info, debug or trace.
    pub level: String,
    pub flv_dir: PathBuf,
    pub flv_archive: bool,
    /// Number of GOPs kept for fast start; 0 disables the GOP cache.
    pub gop_num: usize,
    /// A publisher that sends nothing for this long is disconnected.
    pub read_timeout: Duration,
    /// A player whose socket accepts nothing for this long is disconnected.
    pub write_timeout: Duration,
    pub hls_keep_after_end: bool,
    /// Target HLS segment duration (segments are cut on keyframes at or after it).
    pub hls_fragment: Duration,
    /// Number of segments listed in a live playlist.
    pub hls_window: usize,
    /// Non-empty: room keys live in Redis (DB 0) instead of memory.
    pub redis_addr: String,
    pub redis_pwd: String,
    /// Publishers use the room name directly instead of a channel key.
    pub rtmp_noauth: bool,
    pub enable_rtmps: bool,
    pub rtmps_cert: PathBuf,
    pub rtmps_key: PathBuf,
    pub use_hls_https: bool,
    pub enable_tls_verify: bool,
    /// Non-empty: value of `Access-Control-Allow-Origin` on API responses.
    pub api_cors_origin: String,
    /// How long a player waits for a publisher before it gets StreamNotFound.
    pub play_wait_timeout: Duration,
    /// HTTP-FLV viewers of a room without a publisher wait for one (up to `play_wait_timeout`)
    /// instead of getting 404 at once.
    pub flv_wait_publisher: bool,
    /// Largest RTMP message accepted from a peer, in bytes.
    pub max_message_size: usize,
    /// Largest chunk size a peer may announce, in bytes.
    pub max_chunk_size: usize,
    /// Under heavy ingest, publisher reads of a shard are collected once per this interval
    /// instead of one executor wake-up per message; zero never batches.
    pub ingest_batch: Duration,
    /// Publisher reads per second on one shard from which `ingest_batch` applies.
    pub ingest_batch_above: u64,
    /// Non-zero: players send at most once per this interval, everything queued in one write
    /// (fewer, larger writes for up to this much added delay); zero sends each packet at once.
    pub play_merge: Duration,
    /// TCP_NODELAY on player sockets (RTMP, HTTP-FLV). Off by default, as in nginx-rtmp and
    /// SRS: Nagle lets the kernel put a small message that finds unacknowledged data in flight
    /// into the next segment, which saves a segment (and a wake-up of the receiver) per message.
    pub play_nodelay: bool,
    pub jwt: JwtConfig,
    pub shards: ShardsConfig,
    pub server: Vec<AppConfig>,
    /// Things worth logging once the logger is up (e.g. "using default config"). Loading happens
    /// before the log level is known, so the caller logs these.
    pub warnings: Vec<String>,
}

/// One `[[server]]` application entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    pub appname: String,
    /// RTMP publish/play accepted for this app.
    pub live: bool,
    pub hls: bool,
    pub flv: bool,
    pub api: bool,
    /// RTMP URLs every stream of this app is pushed to.
    pub static_push: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// Non-empty: a JWT is required on the API.
    pub secret: String,
    pub algorithm: JwtAlgorithm,
}

/// The HMAC algorithms livego could actually verify (it keyed every algorithm with the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    Hs256,
    Hs384,
    Hs512,
}

impl JwtAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Hs384 => "HS384",
            JwtAlgorithm::Hs512 => "HS512",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardsConfig {
    /// Number of data shards; 0 = one per available core.
    pub count: usize,
    /// Players accepted on another shard move to the stream's owner shard while the owner
    /// serves fewer than this many of its players: a stream with a small audience then runs on
    /// one core, with no mirror. Beyond it they stay where they were accepted, so a hot
    /// stream's players are served from every core. 0 = players never move.
    pub hot_players: usize,
}

/// Why the configuration could not be produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `--help` or `--version` was asked for: print the text and exit successfully.
    Help(String),
    /// A one-line description naming the offending key; `Display` prefixes `config error: `.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Help(text) => f.write_str(text),
            ConfigError::Invalid(msg) => write!(f, "config error: {msg}"),
        }
    }
}

impl std::error::Error for ConfigError {}

fn default_app() -> AppConfig {
    AppConfig {
        appname: "live".to_string(),
        live: true,
        hls: true,
        flv: true,
        api: true,
        static_push: Vec::new(),
    }
}

fn all_interfaces(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
}

impl Default for Config {
    /// livego's built-in defaults, including the default `live` application that livego uses
    /// when no config file is found.
    fn default() -> Self {
        Config {
            config_file: PathBuf::from(DEFAULT_CONFIG_FILE),
            rtmp_addr: all_interfaces(1935),
            httpflv_addr: all_interfaces(7001),
            hls_addr: all_interfaces(7002),
            api_addr: Some(all_interfaces(8090)),
            level: "info".to_string(),
            flv_dir: PathBuf::from("tmp"),
            flv_archive: false,
            gop_num: 1,
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            hls_keep_after_end: false,
            hls_fragment: Duration::from_secs(3),
            hls_window: 5,
            redis_addr: String::new(),
            redis_pwd: String::new(),
            rtmp_noauth: false,
            enable_rtmps: false,
            rtmps_cert: PathBuf::from("server.crt"),
            rtmps_key: PathBuf::from("server.key"),
            use_hls_https: false,
            enable_tls_verify: true,
            api_cors_origin: String::new(),
            play_wait_timeout: Duration::from_secs(30),
            flv_wait_publisher: false,
            max_message_size: 16 * 1024 * 1024,
            max_chunk_size: 16 * 1024 * 1024,
            ingest_batch: Duration::from_millis(5),
            ingest_batch_above: 1000,
            play_merge: Duration::ZERO,
            play_nodelay: false,
            jwt: JwtConfig {
                secret: String::new(),
                algorithm: JwtAlgorithm::Hs256,
            },
            shards: ShardsConfig {
                count: 0,
                hot_players: 200,
            },
            server: vec![default_app()],
            warnings: Vec::new(),
        }
    }
}

/// Scalar keys as written in the file (dotted for sections). Each is also overridable from the
/// environment, see [`env_name`].
const SCALAR_KEYS: &[&str] = &[
    "rtmp_addr",
    "httpflv_addr",
    "hls_addr",
    "api_addr",
    "level",
    "flv_dir",
    "flv_archive",
    "gop_num",
    "read_timeout",
    "write_timeout",
    "hls_keep_after_end",
    "hls_fragment",
    "hls_window",
    "redis_addr",
    "redis_pwd",
    "rtmp_noauth",
    "enable_rtmps",
    "rtmps_cert",
    "rtmps_key",
    "use_hls_https",
    "enable_tls_verify",
    "api_cors_origin",
    "play_wait_timeout",
    "flv_wait_publisher",
    "max_message_size",
    "max_chunk_size",
    "ingest_batch_ms",
    "ingest_batch_above",
    "play_merge_ms",
    "play_nodelay",
    "jwt.secret",
    "jwt.algorithm",
    "shards.count",
    "shards.hot_players",
];

/// Environment variable overriding `key`: viper's AutomaticEnv naming (upper case, `.` -> `_`),
/// except the shard count, which the design names `SHARDS` to match the `--shards` flag.
fn env_name(key: &str) -> String {
    if key == "shards.count" {
        return "SHARDS".to_string();
    }
    key.replace('.', "_").to_ascii_uppercase()
}

/// What went wrong with a single value; the caller adds the key and where the value came from.
enum ValueError {
    Address(String),
    Value(String),
}

impl ValueError {
    fn describe(&self) -> String {
        match self {
            ValueError::Address(v) => format!("invalid address '{v}'"),
            ValueError::Value(v) => format!("invalid value '{v}'"),
        }
    }
}

/// Go's strconv.ParseBool forms, which viper (via spf13/cast) accepted.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// livego's address forms: ":1935" (every interface), "ip:port", "[v6]:port", "host:port".
fn parse_addr(s: &str) -> Result<SocketAddr, ValueError> {
    let bad = || ValueError::Address(s.to_string());
    if let Some(port) = s.strip_prefix(':') {
        return port.parse::<u16>().map(all_interfaces).map_err(|_| bad());
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() || host.contains(':') {
        return Err(bad());
    }
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(bad)
}

fn parse_uint(s: &str, min: u64, max: u64) -> Result<u64, ValueError> {
    match s.trim().parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ValueError::Value(s.to_string())),
    }
}

fn parse_usize(s: &str, min: usize, max: usize) -> Result<usize, ValueError> {
    parse_uint(s, min as u64, max as u64).map(|v| v as usize)
}

fn parse_secs(s: &str, min: u64) -> Result<Duration, ValueError> {
    // One day is far beyond any sensible timeout and keeps Instant arithmetic safe.
    parse_uint(s, min, 86_400).map(Duration::from_secs)
}

fn parse_flag_bool(s: &str) -> Result<bool, ValueError> {
    parse_bool(s).ok_or_else(|| ValueError::Value(s.to_string()))
}

impl Config {
    /// Sets one scalar key from its textual form (file values are converted to text first, so
    /// the file, the environment and flags share one parser and one set of bounds).
    fn set_scalar(&mut self, key: &str, raw: &str) -> Result<(), ValueError> {
        let value_err = || ValueError::Value(raw.to_string());
        match key {
            "rtmp_addr" => self.rtmp_addr = parse_addr(raw)?,
            "httpflv_addr" => self.httpflv_addr = parse_addr(raw)?,
            "hls_addr" => self.hls_addr = parse_addr(raw)?,
            "api_addr" => {
                self.api_addr = if raw.is_empty() {
                    None
                } else {
                    Some(parse_addr(raw)?)
                }
            }
            "level" => {
                let level = raw.to_ascii_lowercase();
                let level = if level == "warning" {
                    "warn".to_string()
                } else {
                    level
                };
                match level.as_str() {
                    "panic" | "fatal" | "error" | "warn" | "info" | "debug" | "trace" => {
                        self.level = level
                    }
                    _ => return Err(value_err()),
                }
            }
            "flv_dir" => {
                if raw.is_empty() {
                    return Err(value_err());
                }
                self.flv_dir = PathBuf::from(raw)
            }
            "flv_archive" => self.flv_archive = parse_flag_bool(raw)?,
            "gop_num" => self.gop_num = parse_usize(raw, 0, usize::MAX)?,
            "read_timeout" => self.read_timeout = parse_secs(raw, 1)?,
            "write_timeout" => self.write_timeout = parse_secs(raw, 1)?,
            "hls_keep_after_end" => self.hls_keep_after_end = parse_flag_bool(raw)?,
            "hls_fragment" => {
                let secs: f64 = raw.trim().parse().map_err(|_| value_err())?;
                if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
                    return Err(value_err());
                }
                self.hls_fragment = Duration::from_secs_f64(secs);
            }
            "hls_window" => self.hls_window = parse_usize(raw, 1, 1000)?,
            "redis_addr" => self.redis_addr = raw.to_string(),
            "redis_pwd" => self.redis_pwd = raw.to_string(),
            "rtmp_noauth" => self.rtmp_noauth = parse_flag_bool(raw)?,
            "enable_rtmps" => self.enable_rtmps = parse_flag_bool(raw)?,
            "rtmps_cert" => self.rtmps_cert = PathBuf::from(raw),
            "rtmps_key" => self.rtmps_key = PathBuf::from(raw),
            "use_hls_https" => self.use_hls_https = parse_flag_bool(raw)?,
            "enable_tls_verify" => self.enable_tls_verify = parse_flag_bool(raw)?,
            "api_cors_origin" => self.api_cors_origin = raw.to_string(),
            "play_wait_timeout" => self.play_wait_timeout = parse_secs(raw, 0)?,
            "flv_wait_publisher" => self.flv_wait_publisher = parse_flag_bool(raw)?,
            // A message must at least hold a video sequence header; RTMP lengths are 24-bit, so
            // nothing above 16 MiB can ever arrive.
            "max_message_size" => self.max_message_size = parse_usize(raw, 1024, 16 * 1024 * 1024)?,
            // 128 is RTMP's initial chunk size, so any peer can always be served; 2^31-1 is the
            // protocol's own ceiling.
            "max_chunk_size" => self.max_chunk_size = parse_usize(raw, 128, 0x7fff_ffff)?,
            "ingest_batch_ms" => {
                self.ingest_batch = Duration::from_millis(parse_uint(raw, 0, 100)?)
            }
            "ingest_batch_above" => self.ingest_batch_above = parse_uint(raw, 1, 10_000_000)?,
            "play_merge_ms" => self.play_merge = Duration::from_millis(parse_uint(raw, 0, 1000)?),
            "play_nodelay" => self.play_nodelay = parse_flag_bool(raw)?,
            "jwt.secret" => self.jwt.secret = raw.to_string(),
            "jwt.algorithm" => {
                self.jwt.algorithm = match raw.to_ascii_uppercase().as_str() {
                    "" | "HS256" => JwtAlgorithm::Hs256,
                    "HS384" => JwtAlgorithm::Hs384,
                    "HS512" => JwtAlgorithm::Hs512,
                    _ => return Err(value_err()),
                }
            }
            "shards.count" => self.shards.count = parse_usize(raw, 0, 1024)?,
            "shards.hot_players" => self.shards.hot_players = parse_usize(raw, 0, 10_000_000)?,
            _ => return Err(value_err()),
        }
        Ok(())
    }

    /// Builds the configuration from command-line `args` (including the program name, as
    /// `std::env::args` gives them), an environment lookup, and the config file.
    pub fn load(
        args: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::load_with_default_path(args, env, DEFAULT_CONFIG_FILE)
    }

    /// [`Config::load`] with another implicit config path (tests cannot rely on the working
    /// directory lacking a livego.toml).
    fn load_with_default_path(
        args: &[String],
        env: &dyn Fn(&str) -> Option<String>,
        default_path: &str,
    ) -> Result<Config, ConfigError> {
        let flags = Flags::try_parse_from(args).map_err(|e| match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                ConfigError::Help(e.to_string())
            }
            _ => ConfigError::Invalid(first_line_of_clap_error(&e.to_string())),
        })?;
        // viper treats a set-but-empty environment variable as unset (AllowEmptyEnv is off).
        let env = |name: &str| env(name).filter(|v| !v.is_empty());

        let mut cfg = Config::default();
        let (path, explicit) = match (&flags.config_file, env("CONFIG_FILE")) {
            (Some(p), _) => (p.clone(), true),
            (None, Some(p)) => (p, true),
            (None, None) => {
                // A livego user's existing livego.yaml keeps working without a flag.
                let yaml = std::path::Path::new(default_path).with_extension("yaml");
                if !std::path::Path::new(default_path).exists() && yaml.exists() {
                    (yaml.display().to_string(), false)
                } else {
                    (default_path.to_string(), false)
                }
            }
        };
        cfg.config_file = PathBuf::from(&path);
        match std::fs::read_to_string(&path) {
            Ok(text) => cfg.apply_file(&path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                cfg.warnings
                    .push(format!("{path} not found: using default config"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Invalid(format!("{path}: file not found")));
            }
            Err(e) => return Err(ConfigError::Invalid(format!("{path}: {e}"))),
        }

        for key in SCALAR_KEYS {
            let name = env_name(key);
            if let Some(value) = env(&name) {
                cfg.set_scalar(key, &value).map_err(|e| {
                    ConfigError::Invalid(format!(
                        "{key}: {} (from environment variable {name})",
                        e.describe()
                    ))
                })?;
            }
        }

        for (key, value) in flags.values() {
            // Name the flag as the user typed it (`--shards`, not the file's `shards.count`).
            let label = if key == "shards.count" { "shards" } else { key };
            cfg.set_scalar(key, value)
                .map_err(|e| ConfigError::Invalid(format!("{label}: {}", e.describe())))?;
        }
        Ok(cfg)
    }

    /// [`Config::load`] with the real process arguments and environment.
    pub fn from_process() -> Result<Config, ConfigError> {
        let args: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        Config::load(&args, &|name| std::env::var(name).ok())
    }

    /// The first `[[server]]` entry named `name` (livego's "first matching entry wins").
    pub fn app(&self, name: &str) -> Option<&AppConfig> {
        self.server.iter().find(|a| a.appname == name)
    }

    fn apply_file(&mut self, path: &str, text: &str) -> Result<(), ConfigError> {
        let err = |msg: String| ConfigError::Invalid(format!("{path}: {msg}"));
        let table = parse_file(path, text).map_err(err)?;
        // livego replaced its whole default map with the file's content: a file without
        // `server` entries configures no application.
        self.server.clear();
        let mut saw_server = false;
        for (key, value) in &table {
            match key.as_str() {
                "server" => {
                    saw_server = true;
                    self.server = parse_servers(value).map_err(err)?;
                }
                "jwt" | "shards" => {
                    let section = value
                        .as_table()
                        .ok_or_else(|| err(format!("{key}: expected a table")))?;
                    for (sub, v) in section {
                        let full = format!("{key}.{sub}");
                        if !SCALAR_KEYS.contains(&full.as_str()) {
                            return Err(err(format!("unknown key '{full}'")));
                        }
                        self.set_file_scalar(&full, v).map_err(err)?;
                    }
                }
                k if SCALAR_KEYS.contains(&k) && !k.contains('.') => {
                    self.set_file_scalar(k, value).map_err(err)?
                }
                _ => return Err(err(format!("unknown key '{key}'"))),
            }
        }
        if !saw_server {
            self.warnings.push(format!(
                "{path} has no [[server]] entry: no application is configured"
            ));
        }
        Ok(())
    }

    fn set_file_scalar(&mut self, key: &str, value: &toml::Value) -> Result<(), String> {
        let raw = scalar_text(value).ok_or_else(|| format!("{key}: expected a single value"))?;
        self.set_scalar(key, &raw)
            .map_err(|e| format!("{key}: {}", e.describe()))
    }
}

/// The config file as a TOML table, whatever its format (chosen by extension, as viper did).
fn parse_file(path: &str, text: &str) -> Result<toml::Table, String> {
    let ext = std::path::Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let tree: serde_json::Value = match ext.as_deref() {
        Some("yaml") | Some("yml") => serde_yaml_ng::from_str(text).map_err(|e| {
            let msg = e.to_string().replace('\n', " ");
            match e.location() {
                Some(l) => format!("line {}: invalid YAML: {}", l.line(), msg.trim()),
                None => format!("invalid YAML: {}", msg.trim()),
            }
        })?,
        Some("json") => serde_json::from_str(text)
            .map_err(|e| format!("line {}: invalid JSON: {e}", e.line()))?,
        _ => {
            return toml::from_str(text).map_err(|e| {
                let line = e
                    .span()
                    .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
                let msg = e.message().replace('\n', " ");
                match line {
                    Some(line) => format!("line {line}: invalid TOML: {}", msg.trim()),
                    None => format!("invalid TOML: {}", msg.trim()),
                }
            })
        }
    };
    match tree {
        // An empty YAML document (everything commented out) is an empty map.
        serde_json::Value::Null => Ok(toml::Table::new()),
        serde_json::Value::Object(map) => Ok(object_to_table(map)),
        _ => Err("expected a map of keys at the top level".to_string()),
    }
}

/// YAML/JSON tree -> TOML values; `null` (a key with nothing after it) counts as absent.
fn object_to_table(map: serde_json::Map<String, serde_json::Value>) -> toml::Table {
    map.into_iter()
        .filter_map(|(k, v)| json_to_toml(v).map(|v| (k, v)))
        .collect()
}

fn json_to_toml(v: serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => toml::Value::Boolean(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        J::String(s) => toml::Value::String(s),
        J::Array(a) => toml::Value::Array(a.into_iter().filter_map(json_to_toml).collect()),
        J::Object(m) => toml::Value::Table(object_to_table(m)),
    })
}

/// A TOML scalar as text, so file values go through the same parser as flags and env.
fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_servers(value: &toml::Value) -> Result<Vec<AppConfig>, String> {
    let entries = value
        .as_array()
        .ok_or_else(|| "server: expected [[server]] entries".to_string())?;
    let mut apps = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let table = entry
            .as_table()
            .ok_or_else(|| format!("server[{i}]: expected a table"))?;
        let mut app = AppConfig {
            appname: String::new(),
            live: false,
            hls: false,
            flv: false,
            api: false,
            static_push: Vec::new(),
        };
        let mut named = false;
        for (key, v) in table {
            let name = format!("server[{i}].{key}");
            let bool_value = || -> Result<bool, String> {
                scalar_text(v)
                    .as_deref()
                    .and_then(parse_bool)
                    .ok_or_else(|| format!("{name}: invalid value '{}'", display_value(v)))
            };
            match key.as_str() {
                "appname" => {
                    match v.as_str() {
                        Some(s) if !s.is_empty() => app.appname = s.to_string(),
                        _ => return Err(format!("{name}: invalid value '{}'", display_value(v))),
                    }
                    named = true;
                }
                "live" => app.live = bool_value()?,
                "hls" => app.hls = bool_value()?,
                "flv" => app.flv = bool_value()?,
                "api" => app.api = bool_value()?,
                "static_push" => {
                    let list = v
                        .as_array()
                        .ok_or_else(|| format!("{name}: expected a list of RTMP URLs"))?;
                    for (j, url) in list.iter().enumerate() {
                        match url.as_str() {
                            Some(u) if u.starts_with("rtmp://") || u.starts_with("rtmps://") => {
                                app.static_push.push(u.to_string())
                            }
                            _ => {
                                return Err(format!(
                                    "{name}[{j}]: invalid value '{}'",
                                    display_value(url)
                                ))
                            }
                        }
                    }
                }
                _ => return Err(format!("unknown key '{name}'")),
            }
        }
        if !named {
            return Err(format!("server[{i}].appname: missing"));
        }
        apps.push(app);
    }
    Ok(apps)
}

fn display_value(v: &toml::Value) -> String {
    scalar_text(v).unwrap_or_else(|| v.to_string())
}

/// clap reports errors on several lines (usage, tips); the first one carries the meaning.
fn first_line_of_clap_error(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or(text);
    line.trim().trim_start_matches("error: ").to_string()
}

/// livego's flags. Values are kept as text and parsed by [`Config::set_scalar`], so a bad flag
/// value produces the same error as a bad file or environment value.
#[derive(Parser, Debug)]
#[command(
    name = "livego",
    version,
    about = "Thread-per-core live-streaming server (RTMP, HTTP-FLV, HLS), drop-in successor of livego",
    allow_negative_numbers = true
)]
struct Flags {
    /// Config file (TOML) [default: livego.toml]
    #[arg(long = "config_file", value_name = "PATH")]
    config_file: Option<String>,
    /// RTMP listen address [default: :1935]
    #[arg(long = "rtmp_addr", value_name = "ADDR")]
    rtmp_addr: Option<String>,
    /// HTTP-FLV listen address [default: :7001]
    #[arg(long = "httpflv_addr", value_name = "ADDR")]
    httpflv_addr: Option<String>,
    /// HLS listen address [default: :7002]
    #[arg(long = "hls_addr", value_name = "ADDR")]
    hls_addr: Option<String>,
    /// HTTP control API address, empty disables the API [default: :8090]
    #[arg(long = "api_addr", value_name = "ADDR")]
    api_addr: Option<String>,
    /// Log level: panic, fatal, error, warn, info, debug, trace [default: info]
    #[arg(long = "level", value_name = "LEVEL")]
    level: Option<String>,
    /// Directory for FLV recordings [default: tmp]
    #[arg(long = "flv_dir", value_name = "DIR")]
    flv_dir: Option<String>,
    /// Record every published stream to FLV [default: false]
    #[arg(long = "flv_archive", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    flv_archive: Option<String>,
    /// Number of GOPs cached for fast start, 0 disables the cache [default: 1]
    #[arg(long = "gop_num", value_name = "N")]
    gop_num: Option<String>,
    /// Seconds a publisher may stay silent before it is disconnected [default: 10]
    #[arg(long = "read_timeout", value_name = "SECS")]
    read_timeout: Option<String>,
    /// Seconds a player may stay stuck before it is disconnected [default: 10]
    #[arg(long = "write_timeout", value_name = "SECS")]
    write_timeout: Option<String>,
    /// Keep HLS playlist and segments after the publisher leaves [default: false]
    #[arg(long = "hls_keep_after_end", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    hls_keep_after_end: Option<String>,
    /// Redis address for room keys, empty keeps them in memory [default: ""]
    #[arg(long = "redis_addr", value_name = "ADDR")]
    redis_addr: Option<String>,
    /// Redis password [default: ""]
    #[arg(long = "redis_pwd", value_name = "PASSWORD")]
    redis_pwd: Option<String>,
    /// Publish with the room name instead of a channel key [default: false]
    #[arg(long = "rtmp_noauth", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    rtmp_noauth: Option<String>,
    /// Serve RTMPS (TLS) on rtmp_addr [default: false]
    #[arg(long = "enable_rtmps", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    enable_rtmps: Option<String>,
    /// PEM certificate for RTMPS [default: server.crt]
    #[arg(long = "rtmps_cert", value_name = "PATH")]
    rtmps_cert: Option<String>,
    /// PEM private key for RTMPS [default: server.key]
    #[arg(long = "rtmps_key", value_name = "PATH")]
    rtmps_key: Option<String>,
    /// Number of data shards, 0 = one per available core [default: 0]
    #[arg(long = "shards", value_name = "N")]
    shards: Option<String>,
    /// Verify certificates when dialling rtmps:// [default: true]
    #[arg(long = "enable_tls_verify", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    enable_tls_verify: Option<String>,
    /// Seconds a player waits for a publisher before StreamNotFound [default: 30]
    #[arg(long = "play_wait_timeout", value_name = "SECS")]
    play_wait_timeout: Option<String>,
    /// HTTP-FLV viewers wait for a publisher instead of 404 [default: false]
    #[arg(long = "flv_wait_publisher", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    flv_wait_publisher: Option<String>,
}

impl Flags {
    /// The flags that were given, as (config key, value).
    fn values(&self) -> Vec<(&'static str, &str)> {
        let all: [(&'static str, &Option<String>); 21] = [
            ("rtmp_addr", &self.rtmp_addr),
            ("httpflv_addr", &self.httpflv_addr),
            ("hls_addr", &self.hls_addr),
            ("api_addr", &self.api_addr),
            ("level", &self.level),
            ("flv_dir", &self.flv_dir),
            ("flv_archive", &self.flv_archive),
            ("gop_num", &self.gop_num),
            ("read_timeout", &self.read_timeout),
            ("write_timeout", &self.write_timeout),
            ("hls_keep_after_end", &self.hls_keep_after_end),
            ("redis_addr", &self.redis_addr),
            ("redis_pwd", &self.redis_pwd),
            ("rtmp_noauth", &self.rtmp_noauth),
            ("enable_rtmps", &self.enable_rtmps),
            ("rtmps_cert", &self.rtmps_cert),
            ("rtmps_key", &self.rtmps_key),
            ("shards.count", &self.shards),
            ("enable_tls_verify", &self.enable_tls_verify),
            ("play_wait_timeout", &self.play_wait_timeout),
            ("flv_wait_publisher", &self.flv_wait_publisher),
        ];
        all.into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write;

    fn args(list: &[&str]) -> Vec<String> {
        std::iter::once("livego")
            .chain(list.iter().copied())
            .map(String::from)
            .collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// Writes `text` to a temporary config file and returns (dir guard, path).
    fn file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("livego.toml");
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(text.as_bytes()).expect("write");
        let p = path.to_string_lossy().into_owned();
        (dir, p)
    }

    fn load_file(text: &str, extra: &[&str]) -> Result<Config, ConfigError> {
        let (_dir, path) = file(text);
        let mut a = vec!["--config_file", path.as_str()];
        a.extend_from_slice(extra);
        Config::load(&args(&a), &no_env)
    }

    fn err_text(r: Result<Config, ConfigError>) -> String {
        match r {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    const NO_FILE: &str = "/nonexistent-dir-livego/none.toml";

    fn load_named(name: &str, text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        Config::load(&args(&["--config_file", &path.to_string_lossy()]), &no_env)
    }

    #[test]
    fn livego_yaml_and_json_files_are_read_as_livego_wrote_them() {
        // livego's shipped livego.yaml plus the keys its README and CHANGELOG show.
        let yaml = r#"
# rtmp_noauth: false
level: debug
gop_num: 2
flv_archive: true
redis_addr:
jwt:
  secret: s3cret
  algorithm: HS384
server:
- appname: live
  live: true
  hls: true
  api: true
  flv: true
  static_push:
  - rtmp://127.0.0.1:1936/live
- appname: other
  live: false
"#;
        let cfg = load_named("livego.yaml", yaml).expect("yaml");
        assert_eq!(cfg.level, "debug");
        assert_eq!(cfg.gop_num, 2);
        assert!(cfg.flv_archive);
        assert_eq!(cfg.redis_addr, "", "an empty YAML value is absent");
        assert_eq!(cfg.jwt.secret, "s3cret");
        assert_eq!(cfg.jwt.algorithm, JwtAlgorithm::Hs384);
        assert_eq!(cfg.server.len(), 2);
        assert!(cfg.server[0].live && cfg.server[0].hls && cfg.server[0].flv);
        assert_eq!(
            cfg.server[0].static_push,
            vec!["rtmp://127.0.0.1:1936/live"]
        );
        assert!(!cfg.server[1].live);

        let json = r#"{"rtmp_addr": "127.0.0.1:1936", "read_timeout": 3,
            "jwt": {"secret": "j", "algorithm": "HS256"},
            "server": [{"appname": "live", "live": true}]}"#;
        let cfg = load_named("livego.json", json).expect("json");
        assert_eq!(cfg.rtmp_addr.port(), 1936);
        assert_eq!(cfg.read_timeout, Duration::from_secs(3));
        assert_eq!(cfg.jwt.secret, "j");
        assert_eq!(cfg.server[0].appname, "live");

        // Everything commented out: no keys, hence (as in livego) no application.
        let cfg = load_named("livego.yml", "# server:\n").expect("empty yaml");
        assert!(cfg.server.is_empty());
        assert!(cfg.warnings.iter().any(|w| w.contains("no application")));

        let e = err_text(load_named(
            "livego.yaml",
            "server:\n- appname: live\n  live: [\n",
        ));
        assert!(
            e.contains("livego.yaml") && e.contains("invalid YAML"),
            "{e}"
        );
        let e = err_text(load_named("livego.yaml", "gop_num: many\n"));
        assert!(e.contains("gop_num: invalid value 'many'"), "{e}");
        let e = err_text(load_named("livego.json", "{\"gop_num\": 1,}"));
        assert!(e.contains("line 1: invalid JSON"), "{e}");
        let e = err_text(load_named("livego.yaml", "- just\n- a list\n"));
        assert!(e.contains("expected a map"), "{e}");
    }

    #[test]
    fn default_config_falls_back_to_livego_yaml() {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml_path = dir.path().join("livego.toml");
        std::fs::write(
            dir.path().join("livego.yaml"),
            "gop_num: 3\nserver:\n- appname: tv\n  live: true\n",
        )
        .expect("write");
        let default = toml_path.to_string_lossy().into_owned();
        let cfg = Config::load_with_default_path(&args(&[]), &no_env, &default).expect("load");
        assert_eq!(cfg.gop_num, 3);
        assert_eq!(cfg.server[0].appname, "tv");
        assert!(cfg.config_file.ends_with("livego.yaml"));
        // A livego.toml next to it wins.
        std::fs::write(&toml_path, "gop_num = 4\n[[server]]\nappname = \"live\"\n").expect("write");
        let cfg = Config::load_with_default_path(&args(&[]), &no_env, &default).expect("load");
        assert_eq!(cfg.gop_num, 4);
    }

    #[test]
    fn missing_default_file_uses_defaults_with_warning() {
        let cfg = Config::load_with_default_path(&args(&[]), &no_env, NO_FILE).expect("load");
        assert_eq!(
            cfg.warnings,
            vec![format!("{NO_FILE} not found: using default config")]
        );
        let expected = Config {
            config_file: PathBuf::from(NO_FILE),
            warnings: cfg.warnings.clone(),
            ..Config::default()
        };
        assert_eq!(cfg, expected);
        assert_eq!(cfg.rtmp_addr, "0.0.0.0:1935".parse().expect("addr"));
        assert_eq!(cfg.httpflv_addr.port(), 7001);
        assert_eq!(cfg.hls_addr.port(), 7002);
        assert_eq!(cfg.api_addr.map(|a| a.port()), Some(8090));
        assert_eq!(cfg.level, "info");
        assert_eq!(cfg.gop_num, 1);
        assert_eq!(cfg.read_timeout, Duration::from_secs(10));
        assert_eq!(cfg.write_timeout, Duration::from_secs(10));
        assert_eq!(cfg.play_wait_timeout, Duration::from_secs(30));
        assert_eq!(cfg.max_message_size, 16 << 20);
        assert_eq!(cfg.max_chunk_size, 16 << 20);
        assert_eq!(cfg.hls_fragment, Duration::from_secs(3));
        assert_eq!(cfg.hls_window, 5);
        assert!(cfg.enable_tls_verify);
        assert_eq!(cfg.jwt.algorithm, JwtAlgorithm::Hs256);
        assert_eq!(cfg.shards.count, 0);
        assert_eq!(cfg.server.len(), 1);
        let live = cfg.app("live").expect("default app");
        assert!(live.live && live.hls && live.flv && live.api);
        assert!(live.static_push.is_empty());
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let e = err_text(Config::load(&args(&["--config_file", NO_FILE]), &no_env));
        assert_eq!(e, format!("config error: {NO_FILE}: file not found"));
        let env = |k: &str| (k == "CONFIG_FILE").then(|| NO_FILE.to_string());
        let e = err_text(Config::load(&args(&[]), &env));
        assert_eq!(e, format!("config error: {NO_FILE}: file not found"));
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let text = "gop_num = 2\nhls_addr = \":9002\"\nlevel = \"debug\"\n[[server]]\nappname = \"live\"\nlive = true\n";
        let (_dir, path) = file(text);
        let env = |k: &str| match k {
            "GOP_NUM" => Some("3".to_string()),
            "LEVEL" => Some("warn".to_string()),
            _ => None,
        };
        // flag beats env beats file
        let cfg =
            Config::load(&args(&["--config_file", &path, "--gop_num", "4"]), &env).expect("load");
        assert_eq!(cfg.gop_num, 4);
        // env beats file
        assert_eq!(cfg.level, "warn");
        // file beats default
        assert_eq!(cfg.hls_addr.port(), 9002);
        // default when nobody sets it
        assert_eq!(cfg.rtmp_addr.port(), 1935);
        let cfg = Config::load(&args(&["--config_file", &path]), &env).expect("load");
        assert_eq!(cfg.gop_num, 3);
        let cfg = Config::load(&args(&["--config_file", &path]), &no_env).expect("load");
        assert_eq!(cfg.gop_num, 2);
        assert_eq!(cfg.level, "debug");
    }

    #[test]
    fn empty_env_is_unset() {
        let env = |k: &str| (k == "API_ADDR").then(String::new);
        let cfg = load_file("[[server]]\nappname=\"live\"\n", &[]).expect("load");
        assert!(cfg.api_addr.is_some());
        let (_d, path) = file("[[server]]\nappname=\"live\"\n");
        let cfg = Config::load(&args(&["--config_file", &path]), &env).expect("load");
        assert!(cfg.api_addr.is_some());
        // An explicit empty flag disables the API.
        let cfg =
            Config::load(&args(&["--config_file", &path, "--api_addr="]), &env).expect("load");
        assert_eq!(cfg.api_addr, None);
    }

    #[test]
    fn bool_flag_forms() {
        let base = "[[server]]\nappname=\"live\"\n";
        let cfg = load_file(base, &["--flv_archive"]).expect("load");
        assert!(cfg.flv_archive);
        let cfg = load_file(base, &["--flv_archive=true"]).expect("load");
        assert!(cfg.flv_archive);
        let cfg = load_file(base, &["--flv_archive=false"]).expect("load");
        assert!(!cfg.flv_archive);
        let cfg = load_file(base, &["--enable_tls_verify=false", "--rtmp_noauth"]).expect("load");
        assert!(!cfg.enable_tls_verify);
        assert!(cfg.rtmp_noauth);
        // A bare bool flag does not swallow the next argument.
        let cfg = load_file(base, &["--hls_keep_after_end", "--gop_num", "0"]).expect("load");
        assert!(cfg.hls_keep_after_end);
        assert_eq!(cfg.gop_num, 0);
        let e = err_text(load_file(base, &["--flv_archive=maybe"]));
        assert_eq!(e, "config error: flv_archive: invalid value 'maybe'");
    }

    #[test]
    fn env_overrides_every_kind_of_key() {
        let vars: HashMap<&str, &str> = [
            ("RTMP_ADDR", "127.0.0.1:1936"),
            ("FLV_ARCHIVE", "true"),
            ("SHARDS", "3"),
            ("JWT_SECRET", "s3cret"),
            ("JWT_ALGORITHM", "HS512"),
            ("REDIS_ADDR", "localhost:6379"),
            ("HLS_FRAGMENT", "2.5"),
            ("USE_HLS_HTTPS", "1"),
        ]
        .into_iter()
        .collect();
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        let (_d, path) = file("[[server]]\nappname=\"live\"\n");
        let cfg = Config::load(&args(&["--config_file", &path]), &env).expect("load");
        assert_eq!(cfg.rtmp_addr, "127.0.0.1:1936".parse().expect("addr"));
        assert!(cfg.flv_archive);
        assert_eq!(cfg.shards.count, 3);
        assert_eq!(cfg.jwt.secret, "s3cret");
        assert_eq!(cfg.jwt.algorithm, JwtAlgorithm::Hs512);
        assert_eq!(cfg.redis_addr, "localhost:6379");
        assert_eq!(cfg.hls_fragment, Duration::from_millis(2500));
        assert!(cfg.use_hls_https);
    }

    #[test]
    fn env_error_names_key_and_variable() {
        let env = |k: &str| (k == "GOP_NUM").then(|| "lots".to_string());
        let (_d, path) = file("[[server]]\nappname=\"live\"\n");
        let e = err_text(Config::load(&args(&["--config_file", &path]), &env));
        assert_eq!(
            e,
            "config error: gop_num: invalid value 'lots' (from environment variable GOP_NUM)"
        );
    }

    #[test]
    fn flag_errors_name_their_key() {
        let base = "[[server]]\nappname=\"live\"\n";
        for (flag, msg) in [
            ("--rtmp_addr=x", "rtmp_addr: invalid address 'x'"),
            (
                "--httpflv_addr=:99999",
                "httpflv_addr: invalid address ':99999'",
            ),
            ("--hls_addr=1.2.3.4", "hls_addr: invalid address '1.2.3.4'"),
            ("--gop_num=-1", "gop_num: invalid value '-1'"),
            ("--read_timeout=0", "read_timeout: invalid value '0'"),
            ("--write_timeout=abc", "write_timeout: invalid value 'abc'"),
            ("--level=loud", "level: invalid value 'loud'"),
            ("--shards=x", "shards: invalid value 'x'"),
            (
                "--play_wait_timeout=-5",
                "play_wait_timeout: invalid value '-5'",
            ),
        ] {
            let e = err_text(load_file(base, &[flag]));
            assert_eq!(e, format!("config error: {msg}"), "flag {flag}");
        }
        // The separate-argument form with a negative number reaches our parser too.
        let e = err_text(load_file(base, &["--gop_num", "-1"]));
        assert_eq!(e, "config error: gop_num: invalid value '-1'");
    }

    #[test]
    fn unknown_flag_is_one_line() {
        let e = err_text(Config::load(&args(&["--bogus"]), &no_env));
        assert!(e.starts_with("config error: "), "{e}");
        assert!(e.contains("--bogus"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn help_is_not_an_error_line() {
        match Config::load(&args(&["--help"]), &no_env) {
            Err(ConfigError::Help(text)) => {
                assert!(text.contains("--rtmp_addr"));
                assert!(text.contains("--config_file"));
            }
            other => panic!("expected help, got {other:?}"),
        }
    }

    #[test]
    fn file_errors_name_file_and_key() {
        let (_d, path) = file("foo = 1\n");
        let e = err_text(Config::load(&args(&["--config_file", &path]), &no_env));
        assert_eq!(e, format!("config error: {path}: unknown key 'foo'"));

        for (text, msg) in [
            ("[jwt]\nsecrt = \"x\"\n", "unknown key 'jwt.secrt'"),
            ("[shards]\ncnt = 1\n", "unknown key 'shards.cnt'"),
            (
                "[[server]]\nappname = \"live\"\nlvie = true\n",
                "unknown key 'server[0].lvie'",
            ),
            ("[[server]]\nlive = true\n", "server[0].appname: missing"),
            (
                "[[server]]\nappname = \"live\"\nlive = \"yes\"\n",
                "server[0].live: invalid value 'yes'",
            ),
            (
                "[[server]]\nappname = \"live\"\nstatic_push = [\"http://x\"]\n",
                "server[0].static_push[0]: invalid value 'http://x'",
            ),
            ("gop_num = -1\n", "gop_num: invalid value '-1'"),
            ("rtmp_addr = \"x\"\n", "rtmp_addr: invalid address 'x'"),
            ("rtmp_addr = [1]\n", "rtmp_addr: expected a single value"),
            ("hls_window = 0\n", "hls_window: invalid value '0'"),
            ("hls_fragment = -1.0\n", "hls_fragment: invalid value '-1'"),
            ("max_chunk_size = 1\n", "max_chunk_size: invalid value '1'"),
            (
                "ingest_batch_ms = 101\n",
                "ingest_batch_ms: invalid value '101'",
            ),
            (
                "play_merge_ms = 1001\n",
                "play_merge_ms: invalid value '1001'",
            ),
            (
                "max_message_size = 99999999\n",
                "max_message_size: invalid value '99999999'",
            ),
            (
                "[jwt]\nalgorithm = \"RS256\"\n",
                "jwt.algorithm: invalid value 'RS256'",
            ),
            ("jwt = 1\n", "jwt: expected a table"),
            ("server = 1\n", "server: expected [[server]] entries"),
            ("config_file = \"x\"\n", "unknown key 'config_file'"),
        ] {
            let (_d, path) = file(text);
            let e = err_text(Config::load(&args(&["--config_file", &path]), &no_env));
            assert_eq!(e, format!("config error: {path}: {msg}"), "file {text:?}");
        }
    }

    #[test]
    fn bad_toml_reports_line() {
        let (_d, path) = file("gop_num = 1\nrtmp_addr = \n");
        let e = err_text(Config::load(&args(&["--config_file", &path]), &no_env));
        assert!(
            e.starts_with(&format!("config error: {path}: line 2: invalid TOML")),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn file_without_server_configures_no_app() {
        let cfg = load_file("gop_num = 0\n", &[]).expect("load");
        assert!(cfg.server.is_empty());
        assert!(cfg.warnings.iter().any(|w| w.contains("no [[server]]")));
        assert_eq!(cfg.app("live"), None);
    }

    #[test]
    fn servers_and_app_lookup() {
        let text = r#"
[[server]]
appname = "live"
live = true
hls = true
static_push = ["rtmp://a/live", "rtmps://b/live"]

[[server]]
appname = "live"
live = false

[[server]]
appname = "other"
flv = "true"
api = 1
"#;
        let cfg = load_file(text, &[]).expect("load");
        assert_eq!(cfg.server.len(), 3);
        let live = cfg.app("live").expect("live");
        assert!(live.live && live.hls && !live.flv && !live.api);
        assert_eq!(live.static_push, vec!["rtmp://a/live", "rtmps://b/live"]);
        let other = cfg.app("other").expect("other");
        assert!(other.flv && other.api && !other.live);
        assert!(cfg.app("nope").is_none());
        assert!(cfg.warnings.is_empty());
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_addr(":1935").ok(),
            Some("0.0.0.0:1935".parse().expect("addr"))
        );
        assert_eq!(
            parse_addr("127.0.0.1:80").ok(),
            Some("127.0.0.1:80".parse().expect("addr"))
        );
        assert_eq!(
            parse_addr("[::1]:80").ok(),
            Some("[::1]:80".parse().expect("addr"))
        );
        assert_eq!(parse_addr("localhost:80").ok().map(|a| a.port()), Some(80));
        for bad in ["", ":", "1935", ":-1", "host:", ":abc", "::1:80"] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_values_of_every_type() {
        let text = r#"
rtmp_addr = "127.0.0.1:1935"
api_addr = ""
level = "WARNING"
flv_dir = "/var/rec"
flv_archive = true
gop_num = 0
read_timeout = 5
write_timeout = "7"
hls_fragment = 2
hls_window = 6
rtmp_noauth = true
rtmps_cert = "c.pem"
api_cors_origin = "*"
play_wait_timeout = 0
max_message_size = 1048576
max_chunk_size = 65536
ingest_batch_ms = 5
ingest_batch_above = 300
play_merge_ms = 40
play_nodelay = true
[jwt]
secret = "k"
algorithm = "hs384"
[shards]
count = 2
hot_players = 50
[[server]]
appname = "live"
"#;
        let cfg = load_file(text, &[]).expect("load");
        assert_eq!(cfg.api_addr, None);
        assert_eq!(cfg.level, "warn");
        assert_eq!(cfg.flv_dir, PathBuf::from("/var/rec"));
        assert!(cfg.flv_archive);
        assert_eq!(cfg.gop_num, 0);
        assert_eq!(cfg.read_timeout, Duration::from_secs(5));
        assert_eq!(cfg.write_timeout, Duration::from_secs(7));
        assert_eq!(cfg.hls_fragment, Duration::from_secs(2));
        assert_eq!(cfg.hls_window, 6);
        assert!(cfg.rtmp_noauth);
        assert_eq!(cfg.rtmps_cert, PathBuf::from("c.pem"));
        assert_eq!(cfg.api_cors_origin, "*");
        assert_eq!(cfg.play_wait_timeout, Duration::ZERO);
        assert_eq!(cfg.max_message_size, 1 << 20);
        assert_eq!(cfg.max_chunk_size, 65536);
        assert_eq!(cfg.ingest_batch, Duration::from_millis(5));
        assert_eq!(cfg.ingest_batch_above, 300);
        assert_eq!(cfg.play_merge, Duration::from_millis(40));
        assert!(cfg.play_nodelay);
        assert_eq!(cfg.jwt.secret, "k");
        assert_eq!(cfg.jwt.algorithm, JwtAlgorithm::Hs384);
        assert_eq!(cfg.shards.count, 2);
        assert_eq!(cfg.shards.hot_players, 50);
    }

    #[test]
    fn shipped_livego_toml_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/livego.toml");
        let cfg = Config::load(&args(&["--config_file", path]), &no_env).expect("load");
        let live = cfg.app("live").expect("live app");
        assert!(live.live && live.hls && live.flv && live.api);
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        // The shipped file documents the defaults; loading it must not change them.
        let expected = Config {
            config_file: PathBuf::from(path),
            ..Config::default()
        };
        assert_eq!(cfg, expected);
    }
}
