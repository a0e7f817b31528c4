//! Backends a test owns: its own redis-server and its own PostgreSQL cluster, which it may
//! stop, kill and start again without disturbing the other tests on the shared ones.
use std::{path::Path, process::Stdio, time::Duration};

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::eventually;

/// A redis-server of this test, persisting to `dir` only when told to (`SAVE`).
pub struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    pub async fn start(port: u16, dir: &Path) -> anyhow::Result<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let redis = OwnRedis { port, child };
        eventually(Duration::from_secs(10), || async {
            let answer = redis.command(&["PING"]).await.unwrap_or_default();
            Ok((answer == ["PONG"]).then_some(()))
        })
        .await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A command through redis-cli; its output lines. Fails if Redis does not answer.
    pub async fn command(&self, args: &[&str]) -> anyhow::Result<Vec<String>> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .await?;
        let text = String::from_utf8(out.stdout)?;
        anyhow::ensure!(
            out.status.success()
                && !text.starts_with("Could not connect")
                && !text.starts_with("ERR"),
            "redis-cli {args:?}: {text}"
        );
        Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    pub async fn keys(&self, pattern: &str) -> anyhow::Result<Vec<String>> {
        self.command(&["KEYS", pattern]).await
    }

    /// Reads answered from a key that existed, since the server started.
    pub async fn hits(&self) -> anyhow::Result<u64> {
        let info = self.command(&["INFO", "stats"]).await?;
        info.iter()
            .find_map(|l| l.trim().strip_prefix("keyspace_hits:"))
            .ok_or_else(|| anyhow::anyhow!("no keyspace_hits in INFO stats"))?
            .parse()
            .map_err(Into::into)
    }

    /// SIGKILL: no goodbye to clients, nothing saved.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// A PostgreSQL cluster of this test (initdb in a temporary directory, its own port), run as
/// the `postgres` user when the test runs as root.
pub struct OwnPostgres {
    port: u16,
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    as_root: bool,
}

fn newest_postgres_bin() -> anyhow::Result<std::path::PathBuf> {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL's binaries are expected under /usr/lib/postgresql")?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect();
    versions.sort();
    let v = versions.last().context("no PostgreSQL version installed")?;
    Ok(format!("/usr/lib/postgresql/{v}/bin").into())
}

impl OwnPostgres {
    /// Creates the cluster and starts it.
    pub async fn start(port: u16) -> anyhow::Result<Self> {
        let bin = newest_postgres_bin()?;
        let dir = tempfile::tempdir()?;
        let uid = Command::new("id").arg("-u").output().await?;
        let as_root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if as_root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .await?;
            anyhow::ensure!(status.success(), "chown of the cluster directory failed");
        }
        let pg = OwnPostgres {
            port,
            bin,
            dir,
            as_root,
        };
        let data = pg.dir.path().join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )
        .await?;
        pg.start_again().await?;
        Ok(pg)
    }

    async fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).stdin(Stdio::null()).output().await?;
        anyhow::ensure!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Starts the (stopped) cluster and waits until it accepts connections.
    pub async fn start_again(&self) -> anyhow::Result<()> {
        let data = self.dir.path().join("data");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &options,
                "-l",
                &self.dir.path().join("log").to_string_lossy(),
                "-w",
                "start",
            ],
        )
        .await
    }

    /// Stops the cluster at once (`immediate`: as a crash, open connections are cut).
    pub async fn stop(&self) -> anyhow::Result<()> {
        let data = self.dir.path().join("data");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
        .await
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if self.as_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            std::process::Command::new(exe)
        };
        let _ = cmd
            .args(["-m", "immediate", "-w", "stop", "-D"])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
