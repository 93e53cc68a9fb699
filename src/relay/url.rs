//! `rtmp://host[:port]/app/name[?query]` as relays use it (sans-I/O).

use std::fmt;

pub const DEFAULT_PORT: u16 = 1935;
/// Longest URL accepted; anything longer is an operator mistake or an attack.
const MAX_URL_LEN: usize = 2048;

/// A parsed relay target or source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub app: String,
    /// Stream name, with its `?query` if any (livego appends the query to the name).
    pub stream: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(s: impl Into<String>) -> UrlError {
    UrlError(s.into())
}

impl RtmpUrl {
    /// Parses a full URL: the path needs an app and a stream name. Everything after the app's
    /// `/` is the stream name (it may itself contain `/`).
    pub fn parse(url: &str) -> Result<RtmpUrl, UrlError> {
        let (host, port, path) = split_authority(url)?;
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let (app, name) = path
            .split_once('/')
            .ok_or_else(|| err("rtmp url needs /app/name"))?;
        if app.is_empty() || name.is_empty() {
            return Err(err("rtmp url needs a non-empty app and stream name"));
        }
        let stream = match query {
            Some(q) => format!("{name}?{q}"),
            None => name.to_string(),
        };
        Ok(RtmpUrl {
            host,
            port,
            app: app.to_string(),
            stream,
        })
    }

    /// Parses a static_push base `rtmp://host[:port]/app[/more]` and appends `/room`, as livego
    /// did (`U + "/" + room`).
    pub fn with_room(base: &str, room: &str) -> Result<RtmpUrl, UrlError> {
        Self::parse(&format!("{}/{room}", base.trim_end_matches('/')))
    }

    /// `rtmp://host:port/app`, the tcUrl sent in connect.
    pub fn tc_url(&self) -> String {
        format!("rtmp://{}/{}", self.authority(), self.app)
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rtmp://{}/{}/{}",
            self.authority(),
            self.app,
            self.stream
        )
    }
}

/// Splits `rtmp://authority/rest` into host, port and `rest`.
fn split_authority(url: &str) -> Result<(String, u16, &str), UrlError> {
    if url.len() > MAX_URL_LEN {
        return Err(err("rtmp url too long"));
    }
    if url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(err("rtmp url contains spaces or control characters"));
    }
    let scheme_end = url.find("://").ok_or_else(|| err("not an rtmp:// url"))?;
    if !url[..scheme_end].eq_ignore_ascii_case("rtmp") {
        return Err(err(format!(
            "unsupported scheme {:?} (only rtmp)",
            &url[..scheme_end]
        )));
    }
    let rest = &url[scheme_end + 3..];
    let (authority, path) = rest
        .split_once('/')
        .ok_or_else(|| err("rtmp url needs /app/name"))?;
    if authority.contains('@') {
        return Err(err("credentials in rtmp urls are not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| err("unterminated [ in host"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| err("garbage after ] in host"))?,
                ),
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(err("rtmp url has no host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| err(format!("bad port {p:?}")))?,
    };
    Ok((host.to_string(), port, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn full_url() {
        let u = RtmpUrl::parse("rtmp://example.com:1936/live/movie").unwrap();
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, 1936);
        assert_eq!(u.app, "live");
        assert_eq!(u.stream, "movie");
        assert_eq!(u.tc_url(), "rtmp://example.com:1936/live");
        assert_eq!(u.to_string(), "rtmp://example.com:1936/live/movie");
    }

    #[test]
    fn default_port_query_and_nested_name() {
        let u = RtmpUrl::parse("rtmp://10.0.0.1/app/a/b?token=1").unwrap();
        assert_eq!((u.port, u.app.as_str()), (1935, "app"));
        assert_eq!(u.stream, "a/b?token=1");
    }

    #[test]
    fn ipv6_keeps_its_port() {
        let u = RtmpUrl::parse("rtmp://[::1]:1937/live/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1937));
        assert_eq!(u.tc_url(), "rtmp://[::1]:1937/live");
    }

    #[test]
    fn static_push_base_gets_the_room() {
        let u = RtmpUrl::with_room("rtmp://h:2000/live/", "room1").unwrap();
        assert_eq!(u.to_string(), "rtmp://h:2000/live/room1");
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "http://h/live/x",
            "rtmps://h/live/x",
            "rtmp://h/live",
            "rtmp://h/live/",
            "rtmp://h//x",
            "rtmp:///live/x",
            "rtmp://h:0/live/x",
            "rtmp://h:99999/live/x",
            "rtmp://h:x/live/x",
            "rtmp://u:p@h/live/x",
            "rtmp://h/live/x y",
            "rtmp://[::1/live/x",
        ] {
            assert!(RtmpUrl::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = RtmpUrl::parse(&s);
            let _ = RtmpUrl::with_room(&s, "r");
        }

        #[test]
        fn display_round_trips(host in "[a-z][a-z0-9.]{0,20}", port in 1u16.., app in "[a-z0-9_]{1,10}", name in "[a-zA-Z0-9_/]{0,10}[a-z]") {
            let u = RtmpUrl { host, port, app, stream: name };
            prop_assert_eq!(RtmpUrl::parse(&u.to_string()).unwrap(), u);
        }
    }
}
