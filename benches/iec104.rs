//! The IEC 60870-5-104 station's throughput (issue 23): 1000 measured values, each round all
//! of them moved past their deadband and sent spontaneously (M_ME_TF_1, 16 to an ASDU) to one
//! started master on loopback, which acknowledges every 8 I-frames as the standard's w asks:
//! the time until the master has every value of a round, and so values per second.
//!
//! The master here is a bare one written for the bench (STARTDT, S-frames); the station's
//! conformance is the c104 tests'.
//!
//! Run: `cargo bench --bench iec104` (about half a minute).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use pedf_iec104::frame::{Apdu, UFunction};
use pedf_iec104::{Config, Outstation, PointMap, ValuePoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POINTS: usize = 1000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let names: Vec<String> = (0..POINTS).map(|i| format!("p{i}")).collect();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        common_address: 1,
        masters: vec!["127.0.0.1".parse().unwrap()],
        k: 12,
        w: 8,
        t1: Duration::from_secs(15),
        t2: Duration::from_secs(10),
        t3: Duration::from_secs(20),
        cyclic: None,
        points: PointMap {
            measurements: names
                .iter()
                .enumerate()
                .map(|(i, n)| ValuePoint {
                    name: n.clone(),
                    ioa: 1000 + i as u32,
                    deadband: 0.5,
                })
                .collect(),
            ..PointMap::default()
        },
        utc_offset: chrono::FixedOffset::east_opt(8 * 3600).unwrap(),
        select_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(5),
    };
    let (station, mut stream) = rt.block_on(async {
        let (station, _commands) = Outstation::start(config, chrono::Utc::now).unwrap();
        let mut s = tokio::net::TcpStream::connect(station.addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(&Apdu::U(UFunction::StartDt(false)).encode())
            .await
            .unwrap();
        let mut b = [0u8; 6];
        s.read_exact(&mut b).await.unwrap();
        (station, s)
    });
    let mut buf = Vec::new();
    let mut recv: u16 = 0;
    let mut unacked = 0;
    let mut round = 0u32;
    let mut one_round = |station: &Outstation, stream: &mut tokio::net::TcpStream| {
        round += 1;
        let v = f64::from(round % 2) * 10.0;
        let values: Vec<(&str, Option<f64>)> =
            names.iter().map(|n| (n.as_str(), Some(v))).collect();
        station.update(&values, &[]);
        rt.block_on(async {
            let mut got = 0usize;
            let mut chunk = [0u8; 8192];
            while got < POINTS {
                let n = stream.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                while let Ok((apdu, used)) = Apdu::decode(&buf) {
                    buf.drain(..used);
                    if let Apdu::I { asdu, .. } = apdu {
                        got += usize::from(asdu[1] & 0x7F);
                        recv = (recv + 1) % pedf_iec104::frame::MODULO;
                        unacked += 1;
                        if unacked >= 8 {
                            stream.write_all(&Apdu::S { recv }.encode()).await.unwrap();
                            unacked = 0;
                        }
                    }
                }
            }
        })
    };
    one_round(&station, &mut stream);
    let t0 = std::time::Instant::now();
    let rounds = 20;
    for _ in 0..rounds {
        one_round(&station, &mut stream);
    }
    let per = t0.elapsed().as_secs_f64() / f64::from(rounds);
    println!(
        "{POINTS} spontaneous values a round in {:.2} ms: {:.0} values/s to one master",
        per * 1e3,
        POINTS as f64 / per
    );
    let mut g = c.benchmark_group("iec104");
    g.sample_size(20);
    g.bench_function("1000 values spontaneously to one master", |b| {
        b.iter(|| one_round(&station, &mut stream))
    });
    g.finish();
    station.stop();
}

criterion_group!(benches, bench);
criterion_main!(benches);
