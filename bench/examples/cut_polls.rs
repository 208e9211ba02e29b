//! A storm of cut long polls against a running demo (`demo --port P`): opens `N` connections
//! (from 127.0.0.1–127.0.0.4, spread over their ephemeral ports), each a long poll of 120 s,
//! waits until the demo's `/metrics` shows them all active, closes every connection at once,
//! then reads `/metrics` every 5 ms until `http_server_active_requests` is 0 and prints how long
//! that took.
//!
//! ```text
//! cargo run --release -p async-mvc-examples --bin demo -- --port 18080 &
//! cargo run --release -p async-mvc-bench --example cut_polls -- 127.0.0.1:18080 18000
//! ```

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

/// A whole HTTP/1.1 exchange on a new connection: the response's text.
async fn exchange(server: SocketAddr, request: String) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(server).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

async fn active(server: SocketAddr) -> std::io::Result<f64> {
    let text = exchange(
        server,
        "GET /metrics HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n".to_owned(),
    )
    .await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix("http_server_active_requests "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut args = std::env::args().skip(1);
    let server: SocketAddr = args.next().ok_or("usage: cut_polls HOST:PORT N")?.parse()?;
    let n: usize = args.next().map_or(Ok(18_000), |n| n.parse())?;
    let placed = exchange(
        server,
        "POST /api/orders HTTP/1.1\r\nHost: demo\r\nContent-Type: application/json\r\nContent-Length: 17\r\nConnection: close\r\n\r\n{\"item\":\"storm\"}\n".to_owned(),
    )
    .await?;
    let id = placed
        .split("\"id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or("no order id")?
        .to_owned();
    let baseline = active(server).await?;
    let request = format!(
        "GET /api/orders/{id}/next?after=99&timeout_ms=120000 HTTP/1.1\r\nHost: demo\r\n\r\n"
    );
    let mut streams = Vec::with_capacity(n);
    for i in 0..n {
        let source = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1 + (i % 4) as u8), 0));
        let socket = TcpSocket::new_v4()?;
        socket.bind(source)?;
        let mut stream = socket.connect(server).await?;
        stream.write_all(request.as_bytes()).await?;
        streams.push(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while active(server).await? < baseline + n as f64 {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {n} polls became active",
                active(server).await? - baseline
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cut = Instant::now();
    drop(streams);
    let mut reads = 0;
    while active(server).await? > baseline {
        reads += 1;
        if cut.elapsed() > Duration::from_secs(30) {
            return Err("active requests did not return to the baseline within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "{n} long polls cut at once: http_server_active_requests back to {baseline} after {} ms ({reads} scrapes)",
        cut.elapsed().as_millis()
    );
    Ok(())
}
