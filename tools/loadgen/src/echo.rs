//! `echo`: the floor for one gRPC call on this machine. A bare tonic server (the standard
//! health service, nothing behind it) runs as a child process of this same binary, and the
//! load is driven at it exactly as at a real service (same driver, channels and open loop), so
//! a scenario's latency can be read against what any RPC costs here.
use std::{process::Stdio, sync::Arc};

use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{
    driver::{self, LoadArgs, Outcome, Workload},
    grpc::class,
    stats::Summary,
};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// An echo server already running (`loadgen echo-server`); unset = start one as a child
    /// process on a free port.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// HTTP/2 connections the calls are spread over (round robin).
    #[arg(long, default_value_t = 4)]
    pub channels: usize,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Serves the bare health service on `listen` and prints `listening on <addr>` once bound.
pub async fn serve(listen: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let (_reporter, health) = tonic_health::server::health_reporter();
    tonic::transport::Server::builder()
        .add_service(health)
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await?;
    Ok(())
}

struct Echo {
    channels: Vec<Channel>,
}

impl Workload for Echo {
    async fn call(&self, seq: u64) -> Outcome {
        let channel = self.channels[seq as usize % self.channels.len()].clone();
        match HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
        {
            Ok(_) => Outcome::ok("echo"),
            Err(s) => Outcome::failed("echo", class(&s)),
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<Summary> {
    let mut child = None;
    let endpoint = match args.endpoint.clone() {
        Some(e) => e,
        None => {
            let mut server = tokio::process::Command::new(std::env::current_exe()?)
                .args(["echo-server", "--listen", "127.0.0.1:0"])
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let stdout = server
                .stdout
                .take()
                .ok_or_else(|| anyhow::anyhow!("echo server without stdout"))?;
            let line = BufReader::new(stdout)
                .lines()
                .next_line()
                .await?
                .unwrap_or_default();
            let addr = line
                .strip_prefix("listening on ")
                .ok_or_else(|| anyhow::anyhow!("echo server said {line:?}"))?;
            child = Some(server);
            format!("http://{addr}")
        }
    };
    let grpc = crate::grpc::GrpcArgs {
        endpoint,
        api_key: String::new(),
        channels: args.channels,
    };
    let channels = grpc.connect().await?;
    let load = args.load.load();
    let run = driver::run(
        Arc::new(Echo { channels }),
        &load,
        "echo",
        args.load.progress(),
    )
    .await;
    let summary = run.stats.summary(
        "gRPC Health/Check on a bare tonic server (echo)",
        run.elapsed,
    );
    println!("{summary}");
    drop(child);
    Ok(summary)
}
