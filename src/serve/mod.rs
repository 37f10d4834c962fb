//! `cats serve`: a small local web app to watch a run and play with its generator.
//!
//! Two pages, served from the binary (HTML, CSS and JavaScript embedded with
//! `include_str!`; no CDN, no build step):
//!
//! - **Run** (`/run`): live loss curves, D(x) / D(G(z)), throughput and FID from
//!   `metrics.csv`, the preview grids over time with a step slider, and `config.json`;
//! - **Generator** (`/generator`): cats from a seed, a grid, and a latent walk between two
//!   seeds, drawn by the server from the checkpoint (the generator average when the run
//!   kept one), reloaded when the checkpoint file changes.
//!
//! The JSON/PNG API behind them validates every parameter (400 with a message that says
//! what is allowed) and reads only fixed names inside the run folder:
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/run[?after=STEP]` | config, metrics rows (after `STEP`), preview steps |
//! | `GET /api/samples/{step}` | the preview grid PNG of an integer step |
//! | `GET /api/generator` | the loaded checkpoint (step, EMA, image size) or why none is |
//! | `GET /api/generate?seed=S&count=N` | a PNG grid of `N` (1..=64) cats from seed `S` (u64) |
//! | `GET /api/walk?from=A&to=B&t=T` | the cat at `T` (0..=1) on the slerp from seed `A` to `B` |
//! | `GET /api/walk?from=A&to=B&frames=N` | `N` (2..=32) cats along that walk, in a row |
//!
//! The server binds to 127.0.0.1 by default; while bound to a loopback address it also
//! refuses requests whose `Host` is not a loopback name, so a web page elsewhere cannot
//! reach it through DNS rebinding.

pub mod generator;
pub mod run;

use std::future::IntoFuture;
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use burn::tensor::backend::AutodiffBackend;

use crate::backend::BackendKind;
use generator::{DrawError, GeneratorHandle, Job, WalkFrames, MAX_COUNT, MAX_FRAMES, T_STEPS};
use run::RunFolder;

/// What `cats serve` serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A run folder to watch (the Run page; its `checkpoints/latest.catgan` for the
    /// Generator page unless `checkpoint` is given).
    pub run: Option<PathBuf>,
    /// A checkpoint file, or a run folder whose latest checkpoint to use.
    pub checkpoint: Option<PathBuf>,
    /// Host name or address to bind to.
    pub host: String,
    /// Port to bind to; 0 picks a free one.
    pub port: u16,
    /// Draw with the generator average when the run kept one.
    pub use_ema: bool,
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Neither a run folder nor a checkpoint was given.
    #[error("nothing to serve: give a run folder (--run DIR) or a checkpoint (--checkpoint FILE)")]
    NothingToServe,
    /// The run folder cannot be watched.
    #[error(transparent)]
    Run(#[from] run::RunFolderError),
    /// The checkpoint cannot be used.
    #[error("{0}")]
    Checkpoint(String),
    /// The address cannot be listened on.
    #[error("cannot listen on {address}: {cause}{hint}")]
    Bind {
        /// Host and port asked for.
        address: String,
        /// The cause.
        cause: std::io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// The async runtime could not start or failed.
    #[error("the web server failed: {0}")]
    Runtime(std::io::Error),
}

/// A bound server with its generator loaded, ready to [`run`](Server::run).
pub struct Server {
    listener: StdListener,
    address: SocketAddr,
    app: Router,
}

#[derive(Clone)]
struct AppState {
    run: Option<Arc<RunFolder>>,
    generator: GeneratorHandle,
    /// Only loopback `Host` names are accepted (the server is bound to loopback).
    loopback_only: bool,
}

impl Server {
    /// Checks the run folder and checkpoint, loads the generator on backend `B` (on its own
    /// thread) and binds the address. Errors name what is wrong: a missing run folder or
    /// checkpoint, a port in use.
    pub fn start<B: AutodiffBackend>(
        options: &ServeOptions,
        backend: BackendKind,
        device: B::Device,
    ) -> Result<Server, ServeError> {
        let run = options
            .run
            .as_deref()
            .map(RunFolder::open)
            .transpose()?
            .map(Arc::new);
        let source = match (&options.checkpoint, &run) {
            (Some(path), _) => generator::Source {
                path: crate::resume::resolve_checkpoint(path)
                    .map_err(|e| ServeError::Checkpoint(e.to_string()))?,
                may_be_missing: false,
                use_ema: options.use_ema,
            },
            // A run that has not written its first checkpoint yet is fine: the worker
            // picks it up when it appears.
            (None, Some(run)) => generator::Source {
                path: run.latest_checkpoint(),
                may_be_missing: true,
                use_ema: options.use_ema,
            },
            (None, None) => return Err(ServeError::NothingToServe),
        };
        // Bind before loading: a port in use is reported at once.
        let (listener, address) = bind(&options.host, options.port)?;
        let generator =
            generator::start::<B>(source, backend, device).map_err(ServeError::Checkpoint)?;
        let state = AppState {
            run,
            generator,
            loopback_only: address.ip().is_loopback(),
        };
        Ok(Server {
            listener,
            address,
            app: router(state),
        })
    }

    /// The address bound (with the port picked when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Serves until Ctrl-C (or SIGTERM on Unix).
    pub fn run(self) -> Result<(), ServeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)?;
        let result = runtime.block_on(async move {
            let listener =
                tokio::net::TcpListener::from_std(self.listener).map_err(ServeError::Runtime)?;
            tokio::select! {
                served = axum::serve(listener, self.app).into_future() => {
                    served.map_err(ServeError::Runtime)
                }
                () = stop_signal() => Ok(()),
            }
        });
        // Open keep-alive connections and queued draws are dropped, not waited for.
        runtime.shutdown_timeout(Duration::from_secs(1));
        result
    }
}

fn bind(host: &str, port: u16) -> Result<(StdListener, SocketAddr), ServeError> {
    let shown = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let bind_error = |cause: std::io::Error| {
        let hint = match cause.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another program, perhaps another `cats serve`, uses that port: pick another \
                 with --port, or --port 0 for a free one)"
            }
            std::io::ErrorKind::PermissionDenied => {
                " (ports below 1024 need privileges: pick one above 1024 with --port)"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                " (that address is not one of this machine's: leave --host at 127.0.0.1)"
            }
            _ => "",
        };
        ServeError::Bind {
            address: shown.clone(),
            cause,
            hint,
        }
    };
    let host_only = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = (host_only, port)
        .to_socket_addrs()
        .map_err(|e| {
            bind_error(std::io::Error::new(
                e.kind(),
                format!("--host {host} is not an address or a known host name ({e})"),
            ))
        })?
        .collect();
    let mut last = None;
    for address in addresses {
        match StdListener::bind(address) {
            Ok(listener) => {
                listener.set_nonblocking(true).map_err(bind_error)?;
                let bound = listener.local_addr().map_err(bind_error)?;
                return Ok((listener, bound));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(bind_error(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address")
    })))
}

async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// The two pages: one frame (head, header, navigation) around each page's `<main>`.
static RUN_HTML: LazyLock<String> = LazyLock::new(|| framed("run", include_str!("pages/run.html")));
static GENERATOR_HTML: LazyLock<String> =
    LazyLock::new(|| framed("generator", include_str!("pages/generator.html")));
const APP_JS: &str = include_str!("pages/app.js");
const STYLE_CSS: &str = include_str!("pages/style.css");

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/run") }))
        .route("/run", get(|| async { page(&RUN_HTML) }))
        .route("/generator", get(|| async { page(&GENERATOR_HTML) }))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/api/run", get(api_run))
        .route("/api/samples/{step}", get(api_sample))
        .route("/api/generator", get(api_generator))
        .route("/api/generate", get(api_generate))
        .route("/api/walk", get(api_walk))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not found") })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Refuses non-loopback `Host` names on a loopback server and adds the security headers
/// every answer carries.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.loopback_only {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !is_loopback_host(host) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "this server answers only requests for localhost (it is bound to a loopback \
                 address); open it as http://127.0.0.1:PORT/ or http://localhost:PORT/",
            )
            .into_response();
        }
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    response
}

/// Whether a `Host` header names this machine's loopback: `localhost` (or a
/// `*.localhost` name), `127.x.x.x` or `[::1]`, with any port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `main` in the pages' frame, with `page`'s link marked active.
fn framed(page: &str, main: &str) -> String {
    let active = |name: &str| {
        if name == page {
            " class=\"active\""
        } else {
            ""
        }
    };
    include_str!("pages/layout.html")
        .replace("{page}", page)
        .replace("{run_active}", active("run"))
        .replace("{generator_active}", active("generator"))
        .replace("{main}", main)
}

fn page(html: &'static str) -> Response {
    asset("text/html; charset=utf-8", html)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn png(bytes: Vec<u8>, elapsed: Option<Duration>) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response();
    if let Some(elapsed) = elapsed {
        if let Ok(value) = HeaderValue::from_str(&format!("{:.1}", elapsed.as_secs_f64() * 1e3)) {
            response.headers_mut().insert("x-draw-ms", value);
        }
    }
    response
}

/// An error answer: a status and a plain-text message saying what is allowed.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            format!("{}\n", self.message),
        )
            .into_response()
    }
}

impl From<DrawError> for ApiError {
    fn from(e: DrawError) -> Self {
        let status = match e {
            DrawError::NoGenerator(_) | DrawError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            DrawError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// A query string checked against the parameters a route takes: unknown or repeated
/// names are errors, so a typo never silently falls back to a default.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
        allowed: &[&str],
    ) -> Result<Self, ApiError> {
        let Query(pairs) =
            query.map_err(|e| ApiError::bad(format!("unreadable query string: {e}")))?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                return Err(ApiError::bad(format!(
                    "unknown parameter `{}`: this endpoint takes {}",
                    printable(name),
                    allowed.join(", ")
                )));
            }
            if pairs[..i].iter().any(|(other, _)| other == name) {
                return Err(ApiError::bad(format!("parameter `{name}` given twice")));
            }
        }
        Ok(Params(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A `u64` parameter (a seed or a step), `default` when absent.
    fn u64(&self, name: &str, default: Option<u64>) -> Result<u64, ApiError> {
        match (self.get(name), default) {
            (Some(text), _) => parse_u64(text).ok_or_else(|| {
                ApiError::bad(format!(
                    "{name}={}: expected a whole number from 0 to {}",
                    printable(text),
                    u64::MAX
                ))
            }),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(ApiError::bad(format!("missing parameter `{name}`"))),
        }
    }

    /// A count in `range`, `default` when absent.
    fn count(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<usize>,
        default: usize,
    ) -> Result<usize, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(default);
        };
        parse_u64(text)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                ApiError::bad(format!(
                    "{name}={}: give a whole number from {} to {}",
                    printable(text),
                    range.start(),
                    range.end()
                ))
            })
    }
}

/// Decimal digits only (no sign, no spaces), as a `u64`.
fn parse_u64(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A user's text for an error message: at most 40 characters, control characters escaped.
fn printable(text: &str) -> String {
    let mut shown: String = text.chars().take(40).flat_map(char::escape_debug).collect();
    if text.chars().count() > 40 {
        shown.push('…');
    }
    shown
}

async fn api_run(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = Params::parse(query, &["after"])?;
    let after = match params.get("after") {
        Some(_) => Some(params.u64("after", None)?),
        None => None,
    };
    let Some(run) = state.run.clone() else {
        return Ok(json(&serde_json::json!({
            "run": null,
            "message": "no run folder: this server was started with --checkpoint only. \
                        Start it with --run DIR (a folder written by `cats train`) to watch a run.",
            "generator": state.generator.status(),
        })));
    };
    let snapshot = tokio::task::spawn_blocking(move || run.snapshot(after))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(json(&serde_json::json!({
        "run": snapshot,
        "generator": state.generator.status(),
    })))
}

async fn api_sample(
    State(state): State<AppState>,
    UrlPath(step): UrlPath<String>,
) -> Result<Response, ApiError> {
    // The file name is built from the parsed integer only, never from the request's text.
    let step = parse_u64(&step).ok_or_else(|| {
        ApiError::bad(format!(
            "step `{}`: expected a whole number, as in /api/samples/150",
            printable(&step)
        ))
    })?;
    let run = state.run.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no run folder: start cats serve with --run DIR",
        )
    })?;
    let bytes = tokio::task::spawn_blocking(move || run.sample_png(step))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| match e {
            run::RunFolderError::NoSample(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            run::RunFolderError::Outside(_) => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        })?;
    Ok(png(bytes, None))
}

async fn api_generator(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    Params::parse(query, &[])?;
    Ok(json(&state.generator.status()))
}

async fn api_generate(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = Params::parse(query, &["seed", "count"])?;
    let seed = params.u64("seed", Some(0))?;
    let count = params.count("count", 1..=MAX_COUNT, 1)?;
    let drawn = state.generator.draw(Job::Grid { seed, count }).await?;
    Ok(png(drawn.png, Some(drawn.elapsed)))
}

async fn api_walk(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = Params::parse(query, &["from", "to", "t", "frames"])?;
    let from = params.u64("from", None)?;
    let to = params.u64("to", None)?;
    let frames = match (params.get("t"), params.get("frames")) {
        (Some(_), Some(_)) => return Err(ApiError::bad("give either t or frames, not both")),
        (Some(t), None) => WalkFrames::At(parse_t(t)?),
        (None, Some(_)) => WalkFrames::Strip(params.count("frames", 2..=MAX_FRAMES, 8)?),
        (None, None) => WalkFrames::At(0),
    };
    let drawn = state.generator.draw(Job::Walk { from, to, frames }).await?;
    Ok(png(drawn.png, Some(drawn.elapsed)))
}

/// `t` in [0, 1] as thousandths (the walk's resolution).
fn parse_t(text: &str) -> Result<u32, ApiError> {
    let bad = || {
        ApiError::bad(format!(
            "t={}: give a number from 0 to 1 (e.g. t=0.25)",
            printable(text)
        ))
    };
    // Plain decimals only: no `inf`, `nan`, exponents or signs.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    let t: f64 = text.parse().map_err(|_| bad())?;
    if !(0.0..=1.0).contains(&t) {
        return Err(bad());
    }
    Ok((t * f64::from(T_STEPS)).round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)], allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Params::parse(Ok(Query(pairs)), allowed)
    }

    #[test]
    fn parameters_are_checked_with_messages_that_say_what_is_allowed() {
        let p = params(&[("seed", "42"), ("count", "16")], &["seed", "count"]).unwrap();
        assert_eq!(p.u64("seed", Some(0)).unwrap(), 42);
        assert_eq!(p.count("count", 1..=64, 1).unwrap(), 16);
        for (seed, ok) in [
            ("abc", false),
            ("-1", false),
            (" 1", false),
            ("18446744073709551615", true),
            ("18446744073709551616", false),
            ("", false),
        ] {
            let p = params(&[("seed", seed)], &["seed"]).unwrap();
            assert_eq!(p.u64("seed", Some(0)).is_ok(), ok, "{seed}");
        }
        for count in ["0", "65", "1000", "1.5", "99999999999999999999999"] {
            let p = params(&[("count", count)], &["count"]).unwrap();
            let err = p.count("count", 1..=64, 1).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(err.message.contains("from 1 to 64"), "{}", err.message);
        }
        let unknown = params(&[("sed", "1")], &["seed"]).err().unwrap();
        assert!(
            unknown.message.contains("unknown parameter `sed`"),
            "{}",
            unknown.message
        );
        assert!(params(&[("seed", "1"), ("seed", "2")], &["seed"]).is_err());
    }

    #[test]
    fn t_is_a_plain_number_from_0_to_1() {
        assert_eq!(parse_t("0").unwrap(), 0);
        assert_eq!(parse_t("1").unwrap(), 1000);
        assert_eq!(parse_t("0.25").unwrap(), 250);
        assert_eq!(parse_t(".5").unwrap(), 500);
        for bad in ["2", "-0.1", "nan", "inf", "1e-3", "", "0.5.5", "1.0001"] {
            assert!(parse_t(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_loopback_host_names_pass() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:80",
            "cats.localhost:1",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "192.168.1.2:8080",
            "",
            "[::1",
            "localhost.evil.example",
            "0.0.0.0:8080",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn a_port_in_use_says_what_to_do() {
        let (taken, address) = bind("127.0.0.1", 0).unwrap();
        let err = bind("127.0.0.1", address.port()).unwrap_err().to_string();
        assert!(err.contains("--port 0"), "{err}");
        drop(taken);
    }
}
