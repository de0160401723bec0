//! The connection layer under the API: answers that hyper writes itself,
//! before a request ever reaches a handler, in the documented JSON shape.
//!
//! hyper refuses a request whose URL is over 64 KiB (414), whose head has
//! too many or too large headers (431) or that is not HTTP at all (400), and
//! answers with an empty body that no layer above can touch. This listener
//! wraps each connection so that such an answer is rewritten on its way
//! out: the same status, with `{"error": {"code", "message"}}`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose connections carry hyper's own errors as JSON.
pub(crate) struct Listener(pub(crate) TcpListener);

impl axum::serve::Listener for Listener {
    type Io = JsonErrors<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (JsonErrors::new(stream), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection that rewrites hyper's body-less error answers.
pub(crate) struct JsonErrors<S> {
    inner: S,
    /// A rewritten answer still being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> JsonErrors<S> {
    fn new(inner: S) -> Self {
        JsonErrors {
            inner,
            pending: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> JsonErrors<S> {
    /// Writes out what remains of a rewritten answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(rewritten) = rewrite(buf) {
            self.pending = Some((rewritten, 0));
            // The caller's bytes are taken: what replaces them is written
            // now, or by the flush that follows.
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A body-less answer is one slice; anything else passes through.
        if let [only] = bufs
            && rewrite(only).is_some()
        {
            return self.poll_write(cx, only);
        }
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The JSON version of one of hyper's automatic answers, if `buf` is one:
/// a whole response head, with no body, for 400, 414 or 431. The API's own
/// error answers always carry a JSON body and a content type, so they
/// never match.
fn rewrite(buf: &[u8]) -> Option<Vec<u8>> {
    let (code, message) = match buf.get(..13)? {
        b"HTTP/1.1 400 " | b"HTTP/1.0 400 " => (
            "malformed_request",
            "the request is not valid HTTP/1.1".to_string(),
        ),
        b"HTTP/1.1 414 " | b"HTTP/1.0 414 " => (
            "uri_too_long",
            "the request URL is over the 65534-byte limit".to_string(),
        ),
        b"HTTP/1.1 431 " | b"HTTP/1.0 431 " => (
            "headers_too_large",
            "the request's headers are over the limit: at most 100 headers, and at most \
             about 400 KiB for the whole request head"
                .to_string(),
        ),
        _ => return None,
    };
    let head = std::str::from_utf8(buf).ok()?;
    let head = head.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut out = format!("{status_line}\r\n");
    for line in lines {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match name.as_str() {
            "content-type" => return None,
            "content-length" | "connection" => {}
            _ => {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
    }
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    out.push_str("content-type: application/json\r\nconnection: close\r\n");
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    out.push_str(&body);
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bodyless_errors_are_rewritten() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 11:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite(head).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(out.contains("\r\ndate: Mon, 30 Nov 2026 11:00:00 GMT\r\n"));
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "headers_too_large");

        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n";
        assert!(rewrite(ours).is_none(), "the API's own answers pass");
        let with_body = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 2\r\n\r\n{}";
        assert!(rewrite(with_body).is_none());
        assert!(rewrite(b"HTTP/1.1 200 OK\r\n\r\n").is_none());
    }
}
