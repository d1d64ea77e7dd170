//! A Modbus link over TCP, RTU on a serial line, or RTU framing over TCP (serial gateways): one
//! task owns the connection and serves requests one at a time (one
//! request in flight per connection, as many devices require), with a timeout per request,
//! retries with doubling back-off, and reconnection after any transport failure. A Modbus
//! exception is the device's answer and is not retried.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_modbus::client::{rtu, tcp, Context, Reader, Writer};
use tokio_modbus::{slave::SlaveContext, ExceptionCode, Slave};

use crate::template::Table;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// No answer within the timeout, ms.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {why}")]
    Connect {
        /// The address.
        addr: String,
        /// What the network said.
        why: String,
    },
    /// The connection broke.
    #[error("connection lost: {0}")]
    Io(String),
    /// The device answered with a Modbus exception.
    #[error("the device answered with Modbus exception {0}")]
    Exception(String),
    /// The answer does not parse.
    #[error("malformed answer: {0}")]
    Protocol(String),
    /// More registers than one request reads.
    #[error("{0} registers asked for; one request reads at most 125")]
    TooMany(u16),
    /// The link's task has ended.
    #[error("the link task has stopped")]
    Closed,
}

#[derive(Debug, Clone)]
enum Op {
    Read(Table, u16, u16),
    Write(u16, Vec<u16>),
}

struct Request {
    unit: u8,
    op: Op,
    reply: oneshot::Sender<Result<Vec<u16>, LinkError>>,
}

/// Settings of a link.
#[derive(Debug, Clone, Copy)]
pub struct LinkOptions {
    /// How long to wait for an answer.
    pub timeout: Duration,
    /// Retries after a timeout or a broken connection.
    pub retries: u32,
    /// Wait before a retry (doubled each time).
    pub backoff: Duration,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            timeout: Duration::from_millis(500),
            retries: 2,
            backoff: Duration::from_millis(50),
        }
    }
}

/// Where a link connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Modbus TCP.
    Tcp(SocketAddr),
    /// Modbus RTU frames over a TCP socket (serial-to-Ethernet gateways).
    RtuOverTcp(SocketAddr),
    /// Modbus RTU on a serial line (8N1).
    Serial {
        /// The serial device, e.g. /dev/ttyUSB0.
        path: String,
        /// Baud rate.
        baud: u32,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "{a}"),
            Endpoint::RtuOverTcp(a) => write!(f, "rtu-over-tcp {a}"),
            Endpoint::Serial { path, baud } => write!(f, "{path} at {baud} Bd"),
        }
    }
}

async fn connect(endpoint: &Endpoint, unit: u8) -> std::io::Result<Context> {
    match endpoint {
        Endpoint::Tcp(a) => tcp::connect_slave(*a, Slave(unit)).await,
        Endpoint::RtuOverTcp(a) => Ok(rtu::attach_slave(
            tokio::net::TcpStream::connect(a).await?,
            Slave(unit),
        )),
        Endpoint::Serial { path, baud } => {
            let port = tokio_serial::SerialStream::open(&tokio_serial::new(path, *baud))
                .map_err(std::io::Error::other)?;
            Ok(rtu::attach_slave(port, Slave(unit)))
        }
    }
}

/// A handle to a Modbus connection task; cheap to clone.
#[derive(Debug, Clone)]
pub struct ModbusLink {
    tx: mpsc::Sender<Request>,
}

impl ModbusLink {
    /// Starts the task for a Modbus TCP device at `addr`. It connects on the first request.
    pub fn tcp(addr: SocketAddr, options: LinkOptions) -> ModbusLink {
        Self::new(Endpoint::Tcp(addr), options)
    }

    /// Starts the task for any endpoint. It connects on the first request, not before.
    pub fn new(endpoint: Endpoint, options: LinkOptions) -> ModbusLink {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run(endpoint, options, rx));
        ModbusLink { tx }
    }

    async fn call(&self, unit: u8, op: Op) -> Result<Vec<u16>, LinkError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { unit, op, reply })
            .await
            .map_err(|_| LinkError::Closed)?;
        rx.await.map_err(|_| LinkError::Closed)?
    }

    /// Reads `count` registers (at most 125) from `table` at `addr` of device `unit`.
    pub async fn read(
        &self,
        unit: u8,
        table: Table,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, LinkError> {
        if count > 125 {
            return Err(LinkError::TooMany(count));
        }
        let words = self.call(unit, Op::Read(table, addr, count)).await?;
        if words.len() != usize::from(count) {
            return Err(LinkError::Protocol(format!(
                "{} registers returned, {count} asked for",
                words.len()
            )));
        }
        Ok(words)
    }

    /// Reads any number of holding registers in chunks of 125.
    pub async fn read_long(
        &self,
        unit: u8,
        table: Table,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, LinkError> {
        let mut out = Vec::with_capacity(usize::from(count));
        let mut done = 0u16;
        while done < count {
            let n = (count - done).min(125);
            let start = addr
                .checked_add(done)
                .ok_or_else(|| LinkError::Protocol("address past 65535".into()))?;
            out.extend(self.read(unit, table, start, n).await?);
            done += n;
        }
        Ok(out)
    }

    /// Writes holding registers.
    pub async fn write(&self, unit: u8, addr: u16, words: Vec<u16>) -> Result<(), LinkError> {
        self.call(unit, Op::Write(addr, words)).await.map(|_| ())
    }
}

fn exception(e: ExceptionCode) -> LinkError {
    LinkError::Exception(format!("{e:?}"))
}

async fn execute(
    ctx: &mut Context,
    unit: u8,
    op: &Op,
) -> Result<Vec<u16>, Result<LinkError, LinkError>> {
    // Ok(words) | Err(Ok(final error, no retry)) | Err(Err(transport error: reconnect, retry))
    ctx.set_slave(Slave(unit));
    let result = match op {
        Op::Read(Table::Holding, a, n) => ctx.read_holding_registers(*a, *n).await,
        Op::Read(Table::Input, a, n) => ctx.read_input_registers(*a, *n).await,
        Op::Write(a, words) => ctx
            .write_multiple_registers(*a, words)
            .await
            .map(|r| r.map(|()| Vec::new())),
    };
    match result {
        Ok(Ok(words)) => Ok(words),
        Ok(Err(code)) => Err(Ok(exception(code))),
        Err(tokio_modbus::Error::Protocol(p)) => Err(Err(LinkError::Protocol(p.to_string()))),
        Err(tokio_modbus::Error::Transport(io)) => Err(Err(LinkError::Io(io.to_string()))),
    }
}

async fn run(endpoint: Endpoint, options: LinkOptions, mut rx: mpsc::Receiver<Request>) {
    let timeout_ms = options.timeout.as_millis() as u64;
    let mut ctx: Option<Context> = None;
    while let Some(req) = rx.recv().await {
        let mut attempt = 0u32;
        let result = loop {
            let failure = match ctx.as_mut() {
                None => match tokio::time::timeout(options.timeout, connect(&endpoint, req.unit))
                    .await
                {
                    Ok(Ok(c)) => {
                        ctx = Some(c);
                        continue;
                    }
                    Ok(Err(e)) => LinkError::Connect {
                        addr: endpoint.to_string(),
                        why: e.to_string(),
                    },
                    Err(_) => LinkError::Timeout(timeout_ms),
                },
                Some(_) => {
                    // The request runs in its own task: tokio-modbus debug-asserts on some
                    // malformed answers (a short register list), and a device's bad answer must
                    // never take the link down. A panic there is a protocol error here.
                    let mut c = ctx.take().expect("checked above");
                    let (unit, op, timeout) = (req.unit, req.op.clone(), options.timeout);
                    let task = tokio::spawn(async move {
                        let r = tokio::time::timeout(timeout, execute(&mut c, unit, &op)).await;
                        (c, r)
                    });
                    match task.await {
                        Ok((c, Ok(Ok(words)))) => {
                            ctx = Some(c);
                            break Ok(words);
                        }
                        Ok((c, Ok(Err(Ok(final_error))))) => {
                            ctx = Some(c);
                            break Err(final_error);
                        }
                        // Transport failure: drop the connection and reconnect.
                        Ok((_, Ok(Err(Err(transport))))) => transport,
                        // A late answer would be taken for the next request's: reconnect.
                        Ok((_, Err(_))) => LinkError::Timeout(timeout_ms),
                        Err(_) => LinkError::Protocol(
                            "the answer does not match the request (register count)".into(),
                        ),
                    }
                }
            };
            if attempt >= options.retries {
                break Err(failure);
            }
            tokio::time::sleep(options.backoff * 2u32.saturating_pow(attempt)).await;
            attempt += 1;
        };
        let _ = req.reply.send(result);
    }
}
