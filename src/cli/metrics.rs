//! `exliar metrics`: print the Prometheus text once, or serve it
//! (`--listen ADDR`: a small synchronous HTTP/1.1 server, one connection at
//! a time, fresh values on every scrape of `GET /metrics`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use clap::Args;

use super::{exit, term};
use crate::metrics;

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Serve `GET /metrics` on this address (`127.0.0.1:9835`, `[::]:9835`; port 0 picks a free one, printed on stderr) instead of printing once
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// libvirt connection for the VM series
    #[arg(long, short = 'c', value_name = "URI", env = "LIBVIRT_DEFAULT_URI", default_value = crate::vm::virsh::DEFAULT_URI)]
    pub connect: String,
}

pub fn run(root: &Path, a: &MetricsArgs) -> anyhow::Result<u8> {
    if !root.is_dir() {
        anyhow::bail!("{}: not a folder", root.display());
    }
    let opts = metrics::Options {
        root: root.to_path_buf(),
        connect: a.connect.clone(),
    };
    let Some(addr) = &a.listen else {
        let text = metrics::render(&metrics::gather(&opts));
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        return Ok(exit::OK);
    };
    let listener = TcpListener::bind(addr.as_str())
        .map_err(|e| anyhow::anyhow!("listening on {}: {e}", term::safe(addr)))?;
    let local = listener.local_addr()?;
    term::err(&format!(
        "exliar: serving metrics on http://{local}/metrics\n"
    ));
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if let Err(e) = serve_one(stream, &opts) {
                    tracing::info!("a metrics request: {e}");
                }
            }
            Err(e) => tracing::warn!("accepting a connection: {e}"),
        }
    }
    Ok(exit::OK)
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Route a request's head (the request line is all that matters).
fn route(head: &str) -> Route {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => Route::Metrics,
        ("GET" | "HEAD", _) => Route::NotFound,
        _ => Route::MethodNotAllowed,
    }
}

/// The longest request head read (a scrape's is a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;

fn serve_one(mut stream: TcpStream, opts: &metrics::Options) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            break;
        }
    }
    let head = String::from_utf8_lossy(&head);
    let is_head = head.starts_with("HEAD ");
    let (status, ctype, body) = match route(&head) {
        Route::Metrics => (
            "200 OK",
            metrics::CONTENT_TYPE,
            metrics::render(&metrics::gather(opts)),
        ),
        Route::NotFound => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: exliar serves /metrics\n".to_string(),
        ),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET and HEAD\n".to_string(),
        ),
        Route::BadRequest => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "bad request\n".to_string(),
        ),
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        resp.push_str("Allow: GET, HEAD\r\n");
    }
    resp.push_str("\r\n");
    if !is_head {
        resp.push_str(&body);
    }
    stream.write_all(resp.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route("HEAD /metrics HTTP/1.1\r\n\r\n"), Route::Metrics);
        assert_eq!(route("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route("GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route("POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route("GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(""), Route::BadRequest);
        assert_eq!(route("GET /metrics SPDY/3\r\n"), Route::BadRequest);
    }
}
