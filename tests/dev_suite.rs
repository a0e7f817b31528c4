//! `loyalty dev` — the README's run command — brings all six services to SERVING, with
//! reflection listing each one's service, creates the demo key, and stops everything on SIGTERM.
use std::time::Duration;

use loyalty_testkit::eventually;
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

const SERVICES: [(&str, &str); 6] = [
    ("identity", "loyalty.identity.v1.IdentityService"),
    ("wallet", "loyalty.wallet.v1.WalletService"),
    ("rewards", "loyalty.rewards.v1.RewardsService"),
    (
        "segmentation",
        "loyalty.segmentation.v1.SegmentationService",
    ),
    ("campaigns", "loyalty.campaigns.v1.CampaignsService"),
    ("checkout", "loyalty.checkout.v1.CheckoutService"),
];

/// Six consecutive free ports.
fn free_base_port() -> u16 {
    loop {
        let base = loyalty_testkit::free_port();
        if base < 65_000
            && (0..6).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
}

async fn reflected_services(endpoint: String) -> anyhow::Result<Vec<String>> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint)?
        .connect()
        .await?;
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let mut names = Vec::new();
    while let Some(answer) = answers.message().await? {
        if let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response {
            names.extend(list.service.into_iter().map(|s| s.name));
        }
    }
    Ok(names)
}

/// Starts `loyalty dev` and waits until it has written the demo key, which it does once every
/// service is SERVING. Returns the process and the key.
async fn start_dev(
    dir: &std::path::Path,
    base: u16,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let key_file = dir.join("demo-api-key");
    let _ = std::fs::remove_file(&key_file);
    let dev = tokio::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .args(["dev", "--base-port", &base.to_string(), "--data-dir"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    eventually(Duration::from_secs(90), || {
        let exists = key_file.exists();
        async move { Ok(exists.then_some(())) }
    })
    .await?;
    let key = std::fs::read_to_string(&key_file)?.trim().to_owned();
    Ok((dev, key))
}

/// Sends SIGTERM and expects a clean exit that frees every port.
async fn stop_dev(mut dev: tokio::process::Child, base: u16) -> anyhow::Result<()> {
    let pid = dev.id().expect("pid").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    let status = tokio::time::timeout(Duration::from_secs(30), dev.wait()).await??;
    assert!(status.success(), "loyalty dev exited with {status}");
    for i in 0..6 {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok(),
            "port {} is still served after shutdown",
            base + i
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn loyalty_dev_serves_all_six_with_reflection_and_stops_on_sigterm() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let base = free_base_port();
    let (dev, key) = start_dev(dir.path(), base).await?;
    assert!(key.starts_with("lk_"), "{key}");

    for (i, (name, service)) in SERVICES.iter().enumerate() {
        let names = reflected_services(format!("http://127.0.0.1:{}", base + i as u16)).await?;
        assert!(
            names.iter().any(|n| n == service),
            "{name} does not list {service}: {names:?}"
        );
        assert!(names.iter().any(|n| n == "grpc.health.v1.Health"));
        assert!(
            !names.iter().any(|n| n.starts_with("loyalty.")
                && n != service
                && !n.ends_with("EventFeedService")),
            "{name} advertises services it does not serve: {names:?}"
        );
    }
    stop_dev(dev, base).await
}

#[tokio::test(flavor = "multi_thread")]
async fn loyalty_dev_keeps_its_admin_key_and_demo_key_across_restarts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let base = free_base_port();
    let (dev, first_key) = start_dev(dir.path(), base).await?;
    let admin_key = std::fs::read_to_string(dir.path().join("admin-key"))?;
    stop_dev(dev, base).await?;

    let (dev, second_key) = start_dev(dir.path(), base).await?;
    assert_eq!(
        second_key, first_key,
        "the demo key is created once and returned again"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("admin-key"))?,
        admin_key
    );
    stop_dev(dev, base).await
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn loyalty_dev_stops_everything_and_fails_when_a_service_dies() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let base = free_base_port();
    let (mut dev, _) = start_dev(dir.path(), base).await?;
    let pid = dev.id().expect("pid");
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?;
    let children: Vec<&str> = children.split_whitespace().collect();
    assert_eq!(children.len(), 6, "one child per service: {children:?}");

    std::process::Command::new("kill")
        .args(["-KILL", children[2]])
        .status()?;
    let status = tokio::time::timeout(Duration::from_secs(30), dev.wait()).await??;
    assert!(!status.success(), "a dead service fails `loyalty dev`");
    for i in 0..6 {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok(),
            "port {} is still served after the suite stopped",
            base + i
        );
    }
    Ok(())
}
