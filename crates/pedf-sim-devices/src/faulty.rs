//! Raw TCP servers that break the Modbus protocol on purpose.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How a faulty server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Reads requests and never answers.
    Silent,
    /// Reads one request, then closes the connection.
    DropAfterRequest,
    /// Answers a read with a byte count that does not match the data sent.
    WrongByteCount,
    /// Answers a read with fewer registers than asked for (consistent framing).
    ShortAnswer,
}

/// Starts a server on a free loopback port; it runs until the runtime ends.
pub async fn start(mode: Misbehaviour) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 260];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n < 12 {
                        return;
                    }
                    let (tid, unit, func) = ([buf[0], buf[1]], buf[6], buf[7]);
                    let count = u16::from_be_bytes([buf[10], buf[11]]);
                    match mode {
                        Misbehaviour::Silent => continue,
                        Misbehaviour::DropAfterRequest => return,
                        Misbehaviour::WrongByteCount | Misbehaviour::ShortAnswer => {
                            let regs = if mode == Misbehaviour::ShortAnswer {
                                count.saturating_sub(1)
                            } else {
                                count
                            };
                            let claimed = if mode == Misbehaviour::WrongByteCount {
                                (regs * 2 + 4) as u8
                            } else {
                                (regs * 2) as u8
                            };
                            let mut pdu = vec![func, claimed];
                            pdu.extend(std::iter::repeat_n(0u8, usize::from(regs) * 2));
                            let len = (pdu.len() + 1) as u16;
                            let mut frame = vec![tid[0], tid[1], 0, 0];
                            frame.extend(len.to_be_bytes());
                            frame.push(unit);
                            frame.extend(pdu);
                            if stream.write_all(&frame).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// A loopback address where nothing listens (connection refused).
pub async fn refused() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(addr)
}
