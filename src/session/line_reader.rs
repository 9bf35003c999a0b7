//! A connection's input as a stream of [`Frame`]s, holding no buffer while the client is quiet.
//!
//! tokio-util's `FramedRead` keeps its read buffer for the life of the connection. With ten
//! thousand idle clients that buffer is most of what an idle connection costs, so this reader
//! reads into a small stack buffer and keeps bytes on the heap only while they hold an unfinished
//! line (or lines not yet taken). Once every complete line has been taken and nothing is left
//! over, the heap buffer is given back.
//!
//! Invariants:
//! - the heap buffer is empty and unallocated whenever no bytes are waiting;
//! - it never holds more than one read beyond `max_line_bytes + 1` bytes: [`LineCodec`] drops an
//!   over-long line as it arrives.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use futures::Stream;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::Decoder;

use super::line_codec::{Frame, LineCodec};

/// Bytes read at a time: a few chat lines, and small enough for the stack.
const READ_CHUNK: usize = 1024;

/// Lines read from `R`; see the module documentation.
#[derive(Debug)]
pub(crate) struct LineReader<R> {
    inner: R,
    codec: LineCodec,
    /// Bytes read and not yet taken as frames; unallocated while empty.
    pending: BytesMut,
    /// The peer closed its side: what is left in `pending` is the last line.
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Frames of at most `max_line_bytes` bytes read from `inner`.
    pub(crate) fn new(inner: R, max_line_bytes: usize) -> Self {
        LineReader {
            inner,
            codec: LineCodec::new(max_line_bytes),
            pending: BytesMut::new(),
            eof: false,
        }
    }

    /// The next frame already in `pending`, giving the buffer back once it is empty.
    fn take_frame(&mut self) -> io::Result<Option<Frame>> {
        let frame = if self.eof {
            self.codec.decode_eof(&mut self.pending)?
        } else {
            self.codec.decode(&mut self.pending)?
        };
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            self.pending = BytesMut::new();
        }
        Ok(frame)
    }
}

impl<R: AsyncRead + Unpin> Stream for LineReader<R> {
    type Item = io::Result<Frame>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.take_frame() {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) if this.eof => return Poll::Ready(None),
                Ok(None) => {}
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            if let Err(error) = ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read)) {
                return Poll::Ready(Some(Err(error)));
            }
            if read.filled().is_empty() {
                this.eof = true;
            } else {
                this.pending.extend_from_slice(read.filled());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;

    fn line(s: &str) -> Frame {
        Frame::Line(s.to_owned())
    }

    #[tokio::test]
    async fn splits_lines_across_reads_and_gives_the_buffer_back() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut reader = LineReader::new(server, 100);
        client.write_all(b"hel").await.unwrap();
        client.write_all(b"lo\r\nsecond\nthi").await.unwrap();
        assert_eq!(reader.next().await.unwrap().unwrap(), line("hello"));
        assert_eq!(reader.next().await.unwrap().unwrap(), line("second"));
        assert!(reader.pending.capacity() > 0, "holds the unfinished line");
        client.write_all(b"rd\n").await.unwrap();
        assert_eq!(reader.next().await.unwrap().unwrap(), line("third"));
        assert_eq!(
            reader.pending.capacity(),
            0,
            "nothing waiting, nothing held"
        );
        client.write_all(b"last").await.unwrap();
        drop(client);
        assert_eq!(reader.next().await.unwrap().unwrap(), line("last"));
        assert!(reader.next().await.is_none());
    }

    #[tokio::test]
    async fn an_endless_line_is_refused_once_and_never_buffered_whole() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut reader = LineReader::new(server, 10);
        let writer = tokio::spawn(async move {
            for _ in 0..100 {
                client.write_all(&[b'x'; 1000]).await.unwrap();
            }
            client.write_all(b"\nok\n").await.unwrap();
        });
        assert_eq!(reader.next().await.unwrap().unwrap(), Frame::TooLong);
        assert_eq!(reader.next().await.unwrap().unwrap(), line("ok"));
        assert!(reader.pending.capacity() <= READ_CHUNK * 2);
        writer.await.unwrap();
    }
}
