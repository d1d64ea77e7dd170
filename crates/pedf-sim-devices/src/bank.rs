//! A Modbus TCP server over register banks, one bank per unit id.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

/// The registers of one simulated device.
#[derive(Debug, Clone)]
pub struct Bank {
    /// Holding registers from address 0.
    pub holding: Vec<u16>,
    /// Input registers from address 0.
    pub input: Vec<u16>,
    /// Holding registers a client may write (start, count); writes elsewhere are refused with
    /// IllegalDataAddress, as real devices do.
    pub writable: Vec<(u16, u16)>,
    /// Every accepted write: (address, words), oldest first.
    pub writes: Vec<(u16, Vec<u16>)>,
}

impl Default for Bank {
    fn default() -> Self {
        Bank {
            holding: vec![0; 65536],
            input: vec![0; 65536],
            writable: Vec::new(),
            writes: Vec::new(),
        }
    }
}

impl Bank {
    /// Puts `words` at `addr` of the holding table.
    pub fn set(&mut self, addr: u16, words: &[u16]) {
        let a = usize::from(addr);
        self.holding[a..a + words.len()].copy_from_slice(words);
    }

    fn is_writable(&self, addr: u16, n: usize) -> bool {
        let (a, end) = (u32::from(addr), u32::from(addr) + n as u32);
        self.writable
            .iter()
            .any(|&(s, c)| a >= u32::from(s) && end <= u32::from(s) + u32::from(c))
    }
}

/// What a server does wrong on purpose.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer every request after this delay.
    pub delay: Option<Duration>,
    /// Answer every request with this exception.
    pub exception: Option<ExceptionCode>,
}

/// Banks by unit id, shared between the server and whoever drives the simulation.
pub type Banks = Arc<Mutex<BTreeMap<u8, Bank>>>;

#[derive(Clone)]
struct Sim {
    banks: Banks,
    faults: Arc<Mutex<Faults>>,
}

fn answer(banks: &Banks, req: SlaveRequest<'static>) -> Result<Response, ExceptionCode> {
    let mut banks = banks.lock().expect("bank lock");
    let Some(bank) = banks.get_mut(&req.slave) else {
        return Err(ExceptionCode::GatewayTargetDevice);
    };
    let range = |addr: u16, n: u16| -> Result<std::ops::Range<usize>, ExceptionCode> {
        let (a, n) = (usize::from(addr), usize::from(n));
        if n == 0 || n > 125 || a + n > 65536 {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        Ok(a..a + n)
    };
    match req.request {
        Request::ReadHoldingRegisters(addr, n) => Ok(Response::ReadHoldingRegisters(
            bank.holding[range(addr, n)?].to_vec(),
        )),
        Request::ReadInputRegisters(addr, n) => Ok(Response::ReadInputRegisters(
            bank.input[range(addr, n)?].to_vec(),
        )),
        Request::WriteMultipleRegisters(addr, words) => {
            if !bank.is_writable(addr, words.len()) {
                return Err(ExceptionCode::IllegalDataAddress);
            }
            bank.set(addr, &words);
            bank.writes.push((addr, words.to_vec()));
            Ok(Response::WriteMultipleRegisters(addr, words.len() as u16))
        }
        Request::WriteSingleRegister(addr, word) => {
            if !bank.is_writable(addr, 1) {
                return Err(ExceptionCode::IllegalDataAddress);
            }
            bank.set(addr, &[word]);
            bank.writes.push((addr, vec![word]));
            Ok(Response::WriteSingleRegister(addr, word))
        }
        _ => Err(ExceptionCode::IllegalFunction),
    }
}

impl Service for Sim {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Result<Response, ExceptionCode>> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let faults = self.faults.lock().expect("fault lock").clone();
        let banks = self.banks.clone();
        Box::pin(async move {
            if let Some(d) = faults.delay {
                tokio::time::sleep(d).await;
            }
            if let Some(e) = faults.exception {
                return Err(e);
            }
            answer(&banks, req)
        })
    }
}

/// A running simulated Modbus TCP server.
pub struct SimServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The register banks by unit id, shared with the server.
    pub banks: Banks,
    /// The faults the server plays now (tests change them while it runs).
    pub faults: Arc<Mutex<Faults>>,
    task: tokio::task::JoinHandle<()>,
}

impl SimServer {
    /// Serves `banks` on a free loopback port.
    pub async fn start(banks: BTreeMap<u8, Bank>) -> std::io::Result<SimServer> {
        Self::start_on("127.0.0.1:0".parse().expect("loopback"), banks).await
    }

    /// Serves `banks` on `addr` (port 0: any free port).
    pub async fn start_on(
        addr: SocketAddr,
        banks: BTreeMap<u8, Bank>,
    ) -> std::io::Result<SimServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sim = Sim {
            banks: Arc::new(Mutex::new(banks)),
            faults: Arc::new(Mutex::new(Faults::default())),
        };
        let (banks, faults) = (sim.banks.clone(), sim.faults.clone());
        let server = Server::new(listener);
        let task = tokio::spawn(async move {
            let new_service = |_socket_addr| Ok(Some(sim.clone()));
            let on_connected = |stream, socket_addr| async move {
                accept_tcp_connection(stream, socket_addr, new_service)
            };
            let _ = server.serve(&on_connected, |_err| {}).await;
        });
        Ok(SimServer {
            addr,
            banks,
            faults,
            task,
        })
    }

    /// Serves `banks` with RTU framing over TCP (as a serial-to-Ethernet gateway does) on a
    /// free loopback port.
    pub async fn start_rtu_over_tcp(banks: BTreeMap<u8, Bank>) -> std::io::Result<SimServer> {
        use tokio_modbus::server::rtu_over_tcp;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sim = Sim {
            banks: Arc::new(Mutex::new(banks)),
            faults: Arc::new(Mutex::new(Faults::default())),
        };
        let (banks, faults) = (sim.banks.clone(), sim.faults.clone());
        let server = rtu_over_tcp::Server::new(listener);
        let task = tokio::spawn(async move {
            let new_service = |_socket_addr| Ok(Some(sim.clone()));
            let on_connected = |stream, socket_addr| async move {
                rtu_over_tcp::accept_tcp_connection(stream, socket_addr, new_service)
            };
            let _ = server.serve(&on_connected, |_err| {}).await;
        });
        Ok(SimServer {
            addr,
            banks,
            faults,
            task,
        })
    }

    /// Runs `f` on the bank of `unit`.
    pub fn with_bank<R>(&self, unit: u8, f: impl FnOnce(&mut Bank) -> R) -> R {
        let mut banks = self.banks.lock().expect("bank lock");
        f(banks.entry(unit).or_default())
    }

    /// Sets the faults of the server.
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().expect("fault lock") = faults;
    }

    /// Stops listening; open connections end with the task.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
