//! Where and how the sync follows a Vexil data plane.

use std::time::Duration;

use vexil_keys::SecretKind;

use crate::error::{Error, Result};

/// How long the stream may be silent (not even a heartbeat) before it is taken as dead: three of the
/// streaming service's 15 s heartbeats.
pub const DEFAULT_DEAD_STREAM_AFTER: Duration = Duration::from_secs(45);
/// The first reconnect delay (before jitter).
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(500);
/// The longest reconnect delay (before jitter).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often to poll while the stream is down, or when polling only.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// How often to check, by an ETag poll, that a live stream missed nothing.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// Timeout of each poll, and of opening the stream.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The network side of a sync, checked: the server key, the stream and polling URLs, and the timings.
/// Built by [`ClientBuilder`](crate::ClientBuilder) for a client, or by hand for another
/// [`Target`](super::Target) (relay mode).
#[derive(Clone)]
pub struct SyncConfig {
    pub(crate) server_key: String,
    pub(crate) stream_url: String,
    pub(crate) flags_url: String,
    pub(crate) prefix: Option<String>,
    pub(crate) streaming: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) refresh_interval: Duration,
    pub(crate) dead_stream_after: Duration,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) request_timeout: Duration,
}

impl std::fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncConfig")
            .field("server_key", &"<redacted>")
            .field("stream_url", &self.stream_url)
            .field("flags_url", &self.flags_url)
            .field("prefix", &self.prefix)
            .field("streaming", &self.streaming)
            .finish_non_exhaustive()
    }
}

impl SyncConfig {
    /// A sync with `server_key` (a server SDK key, `vxs_...`) of `{stream_base}/v1/stream` and
    /// `{polling_base}/v1/flags`, with the default timings. `Err` for a key that is not a server key
    /// or a base URL that is not an absolute `http://` URL without query or fragment.
    pub fn new(server_key: &str, stream_base: &str, polling_base: &str) -> Result<SyncConfig> {
        if vexil_keys::id_of(SecretKind::Server, server_key).is_none() {
            return Err(Error::InvalidServerKey);
        }
        Ok(SyncConfig {
            server_key: server_key.to_owned(),
            stream_url: format!("{}/v1/stream", base_url("stream", stream_base)?),
            flags_url: format!("{}/v1/flags", base_url("polling", polling_base)?),
            prefix: None,
            streaming: true,
            poll_interval: DEFAULT_POLL_INTERVAL,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            dead_stream_after: DEFAULT_DEAD_STREAM_AFTER,
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// Only flags whose key starts with `prefix` (`?prefix=` on the stream and on polling); empty for
    /// all.
    pub fn prefix(mut self, prefix: &str) -> SyncConfig {
        self.prefix = (!prefix.is_empty()).then(|| prefix.to_owned());
        self
    }

    /// `false`: never open the stream, only poll. Default `true`.
    pub fn streaming(mut self, on: bool) -> SyncConfig {
        self.streaming = on;
        self
    }

    /// How often to poll when polling only, or while the stream is down (at least 10 ms).
    pub fn poll_interval(mut self, every: Duration) -> SyncConfig {
        self.poll_interval = every.max(Duration::from_millis(10));
        self
    }

    /// How often to check (an ETag poll) while the stream is up (at least 10 ms).
    pub fn refresh_interval(mut self, every: Duration) -> SyncConfig {
        self.refresh_interval = every.max(Duration::from_millis(10));
        self
    }

    /// How long the stream may be silent before it is reconnected (at least 10 ms).
    pub fn dead_stream_after(mut self, silence: Duration) -> SyncConfig {
        self.dead_stream_after = silence.max(Duration::from_millis(10));
        self
    }

    /// The reconnect delay: the first and the longest (doubling in between, with jitter).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> SyncConfig {
        self.min_backoff = min.max(Duration::from_millis(1));
        self.max_backoff = max.max(self.min_backoff);
        self
    }

    /// Timeout of each poll, and of opening the stream (at least 10 ms).
    pub fn request_timeout(mut self, timeout: Duration) -> SyncConfig {
        self.request_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// An HTTP client for this sync (its connect timeout is the request timeout).
    pub fn http_client(&self) -> Result<reqwest::Client> {
        reqwest::Client::builder().connect_timeout(self.request_timeout).build().map_err(Error::HttpClient)
    }
}

/// A base URL without its trailing slashes, if it is an absolute `http://` URL with a host and no query
/// or fragment.
pub(crate) fn base_url(which: &'static str, url: &str) -> Result<String> {
    let invalid = |source| Error::InvalidUrl { which, url: url.to_owned(), source };
    let parsed = reqwest::Url::parse(url).map_err(|error| invalid(Some(Box::new(error))))?;
    if parsed.scheme() != "http"
        || parsed.host_str().is_none_or(str::is_empty)
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return Err(invalid(None));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "vxs_ABCDEFabcdef_0123456789abcdefghijABCDEFGHIJ0123";

    #[test]
    fn only_server_keys_pass() {
        assert!(SyncConfig::new(KEY, "http://h", "http://h").is_ok());
        for key in ["vxc_ABCDEFabcdef_0123456789", "vxs_short_0123456789", "vxs_ABCDEFabcdef_", ""] {
            assert!(
                matches!(SyncConfig::new(key, "http://h", "http://h"), Err(Error::InvalidServerKey)),
                "{key}"
            );
        }
    }

    #[test]
    fn base_urls_are_plain_http_without_query_and_lose_trailing_slashes() {
        assert_eq!(base_url("stream", "http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(
            base_url("stream", "http://flags.internal/vexil//").unwrap(),
            "http://flags.internal/vexil"
        );
        for bad in ["127.0.0.1:8080", "https://flags.example", "http://h/?a=1", "http://h/#x", "nonsense", ""]
        {
            assert!(base_url("stream", bad).is_err(), "{bad} was accepted");
        }
        let error = base_url("polling", "https://flags.example").unwrap_err();
        assert!(error.to_string().contains("polling URL"), "{error}");
        let config = SyncConfig::new(KEY, "http://s/", "http://p").unwrap();
        assert_eq!(
            (config.stream_url.as_str(), config.flags_url.as_str()),
            ("http://s/v1/stream", "http://p/v1/flags")
        );
    }
}
