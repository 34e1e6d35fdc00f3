//! A browser WebSocket whose flush does not wait for the send buffer.
//!
//! libp2p-websocket-websys 0.6 answers `poll_flush` with `Pending` until
//! the browser's `bufferedAmount` is 0, and checks that on a 100 ms
//! interval timer. Right after `send` the amount is never 0 (the browser
//! hands the bytes to the network after the current task), so every flush
//! waits for the next tick: up to 100 ms for each message of the connection
//! handshake (multistream-select, noise, yamux) and for each request on the
//! connection afterwards. Measured on loopback: about 400 ms from dial to
//! connected, against 3 ms for a native node over the same WebSocket.
//!
//! Bytes passed to `send` are the browser's to deliver, in order, whether
//! or not we wait; `poll_write` still refuses more than the transport's
//! buffer bound, so backpressure is kept. A flush that would wait is
//! reported done; errors and a closed socket still come through.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{AsyncRead, AsyncWrite};

/// A connection whose `poll_flush` returns as soon as the bytes are handed
/// to the browser.
#[derive(Debug)]
pub(crate) struct EagerFlush<T>(pub(crate) T);

impl<T: AsyncRead + Unpin> AsyncRead for EagerFlush<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EagerFlush<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.0).poll_flush(cx) {
            Poll::Pending => Poll::Ready(Ok(())),
            done => done,
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
