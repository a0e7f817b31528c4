//! `loyalty`: run the whole suite locally, run one service, migrate, and manage partners and
//! API keys.
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

mod import;
mod product_import;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use loyalty_platform::{Settings, client::with_key, db::connect_and_migrate, telemetry};
use loyalty_proto::identity::v1::{
    self as identity, identity_service_client::IdentityServiceClient,
};
use tokio::process::{Child, Command};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

#[derive(Parser)]
#[command(
    name = "loyalty",
    version,
    about = "The loyalty platform: six gRPC services and their tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run all six services locally as child processes (SQLite under the data dir, no Redis),
    /// create a demo partner and API key, and stop everything on Ctrl-C.
    Dev {
        /// Where the SQLite files and keys go.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Port of identity; the others follow (wallet +1, rewards +2, …).
        #[arg(long, default_value_t = 50051)]
        base_port: u16,
    },
    /// Run one service in this process, configured by LOYALTY_* environment variables.
    Serve { service: Service },
    /// Run the database migrations of one or all services (LOYALTY_DATABASE__URL etc.).
    Migrate {
        /// A service name, or `all`.
        #[arg(long, default_value = "all", value_parser = service_or_all)]
        service: Target,
    },
    /// Manage partners (tenants).
    Partner {
        #[command(subcommand)]
        command: PartnerCmd,
    },
    /// Manage API keys.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCmd,
    },
    /// Import data in bulk.
    Import {
        #[command(subcommand)]
        command: ImportCmd,
    },
    /// Operate the wallet's ledger directly on its database (LOYALTY_DATABASE__URL etc.).
    Wallet {
        #[command(subcommand)]
        command: WalletCmd,
    },
}

#[derive(Subcommand)]
enum WalletCmd {
    /// Prove the ledger: stored balances equal the sum of their postings and lots, every lot
    /// equals its award less what was taken, and each points type sums to zero. Exits 1 and
    /// lists every discrepancy otherwise.
    Check {
        /// Only this partner (UUID); default every partner.
        #[arg(long)]
        partner: Option<uuid::Uuid>,
    },
    /// Run the expiry job once: expire lots and release reservations that are due now.
    Expire,
}

#[derive(Subcommand)]
enum ImportCmd {
    /// Import customers from a CSV file with a header row (see the README for the columns).
    /// Refused rows are listed by line number; the others are imported. Running the same
    /// import again (same --import-id) skips the rows it already imported.
    Customers {
        /// The CSV file.
        file: PathBuf,
        /// The identity service.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        endpoint: String,
        /// An API key of the partner with the admin role.
        #[arg(long, env = "LOYALTY_API_KEY", hide_env_values = true)]
        api_key: String,
        /// Names the import so that a re-run skips imported rows; default: file name and size.
        #[arg(long)]
        import_id: Option<String>,
        /// Rows per message, 1..5000.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u16).range(1..=5000))]
        batch_size: u16,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Import the product catalogue from a CSV file with a header row (see docs/rewards.md for
    /// the columns): products are created or replaced by code. Refused lines are listed by line
    /// number and field; the others are imported. Running the same file again changes nothing.
    Products {
        /// The CSV file.
        file: PathBuf,
        /// The rewards service.
        #[arg(long, default_value = "http://127.0.0.1:50053")]
        endpoint: String,
        /// An API key of the partner with the admin or marketing role.
        #[arg(long, env = "LOYALTY_API_KEY", hide_env_values = true)]
        api_key: String,
        /// Products per streamed batch, 1..1000.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=1000))]
        batch_size: u16,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Clone, clap::Args)]
struct Remote {
    /// The identity service.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    endpoint: String,
    /// The platform admin key.
    #[arg(long, env = "LOYALTY_ADMIN_KEY", hide_env_values = true)]
    admin_key: String,
}

#[derive(Subcommand)]
enum PartnerCmd {
    /// Create a partner.
    Create {
        #[arg(long)]
        name: String,
        /// ISO 4217 currency of the loyalty program.
        #[arg(long, default_value = "EUR")]
        currency: String,
        /// Retrying with the same key returns the same partner.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum ApiKeyCmd {
    /// Create an API key for a partner and print its secret (shown once).
    Create {
        #[arg(long)]
        partner: String,
        #[arg(long)]
        name: String,
        /// Comma-separated: admin, pos, marketing, support, service.
        #[arg(long, value_delimiter = ',', default_value = "pos")]
        roles: Vec<RoleArg>,
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    Pos,
    Marketing,
    Support,
    Service,
}

impl RoleArg {
    fn proto(self) -> i32 {
        (match self {
            RoleArg::Admin => identity::Role::Admin,
            RoleArg::Pos => identity::Role::Pos,
            RoleArg::Marketing => identity::Role::Marketing,
            RoleArg::Support => identity::Role::Support,
            RoleArg::Service => identity::Role::Service,
        }) as i32
    }
}

/// One service or all of them.
#[derive(Clone, Copy)]
enum Target {
    All,
    One(Service),
}

fn service_or_all(s: &str) -> Result<Target, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Target::All);
    }
    Service::from_str(s, true).map(Target::One).map_err(|_| {
        let names: Vec<&str> = ALL.iter().map(|s| s.name()).collect();
        format!("expected `all` or one of {}", names.join(", "))
    })
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Service {
    Identity,
    Wallet,
    Rewards,
    Segmentation,
    Campaigns,
    Checkout,
}

const ALL: [Service; 6] = [
    Service::Identity,
    Service::Wallet,
    Service::Rewards,
    Service::Segmentation,
    Service::Campaigns,
    Service::Checkout,
];

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Identity => loyalty_identity::SERVICE,
            Service::Wallet => loyalty_wallet::SERVICE,
            Service::Rewards => loyalty_rewards::SERVICE,
            Service::Segmentation => loyalty_segmentation::SERVICE,
            Service::Campaigns => loyalty_campaigns::SERVICE,
            Service::Checkout => loyalty_checkout::SERVICE,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Service::Identity => loyalty_identity::DEFAULT_PORT,
            Service::Wallet => loyalty_wallet::DEFAULT_PORT,
            Service::Rewards => loyalty_rewards::DEFAULT_PORT,
            Service::Segmentation => loyalty_segmentation::DEFAULT_PORT,
            Service::Campaigns => loyalty_campaigns::DEFAULT_PORT,
            Service::Checkout => loyalty_checkout::DEFAULT_PORT,
        }
    }

    fn settings(self) -> anyhow::Result<Settings> {
        Settings::load(self.name(), self.default_port())
    }

    async fn serve(self) -> anyhow::Result<()> {
        let settings = self.settings()?;
        let _telemetry = telemetry::init(self.name(), &settings.telemetry)?;
        match self {
            Service::Identity => loyalty_identity::run(settings).await,
            Service::Wallet => loyalty_wallet::run(settings).await,
            Service::Rewards => loyalty_rewards::run(settings).await,
            Service::Segmentation => loyalty_segmentation::run(settings).await,
            Service::Campaigns => loyalty_campaigns::run(settings).await,
            Service::Checkout => loyalty_checkout::run(settings).await,
        }
    }

    async fn migrate(self) -> anyhow::Result<()> {
        let s = self.settings()?;
        let db = match self {
            Service::Identity => {
                connect_and_migrate::<loyalty_identity::migration::Migrator>(&s).await
            }
            Service::Wallet => connect_and_migrate::<loyalty_wallet::migration::Migrator>(&s).await,
            Service::Rewards => {
                connect_and_migrate::<loyalty_rewards::migration::Migrator>(&s).await
            }
            Service::Segmentation => {
                connect_and_migrate::<loyalty_segmentation::migration::Migrator>(&s).await
            }
            Service::Campaigns => {
                connect_and_migrate::<loyalty_campaigns::migration::Migrator>(&s).await
            }
            Service::Checkout => {
                connect_and_migrate::<loyalty_checkout::migration::Migrator>(&s).await
            }
        }?;
        db.close().await?;
        println!("{}: migrations applied", self.name());
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Dev {
            data_dir,
            base_port,
        } => dev(&data_dir, base_port).await,
        Cmd::Serve { service } => service.serve().await,
        Cmd::Migrate { service } => migrate(service).await,
        Cmd::Partner {
            command:
                PartnerCmd::Create {
                    name,
                    currency,
                    idempotency_key,
                    remote,
                },
        } => create_partner(&remote, &name, &currency, idempotency_key)
            .await
            .map(|p| {
                println!("partner {} ({}) created", p.id, p.display_name);
            }),
        Cmd::ApiKey {
            command:
                ApiKeyCmd::Create {
                    partner,
                    name,
                    roles,
                    idempotency_key,
                    remote,
                },
        } => create_api_key(&remote, &partner, &name, &roles, idempotency_key)
            .await
            .map(|(id, secret)| {
                println!("API key {id} created; its secret (shown only now):\n{secret}");
            }),
        Cmd::Import {
            command:
                ImportCmd::Customers {
                    file,
                    endpoint,
                    api_key,
                    import_id,
                    batch_size,
                    quiet,
                },
        } => import::customers(
            &endpoint,
            &api_key,
            &file,
            import_id,
            batch_size.into(),
            quiet,
        )
        .await
        .and_then(|s| {
            println!(
                "imported {} customers ({:.0}/s), skipped {} already imported, refused {}",
                s.imported, s.rows_per_second, s.skipped, s.failed
            );
            if s.failed > 0 {
                bail!(
                    "{} rows were refused (listed above by line number)",
                    s.failed
                );
            }
            Ok(())
        }),
        Cmd::Import {
            command:
                ImportCmd::Products {
                    file,
                    endpoint,
                    api_key,
                    batch_size,
                    quiet,
                },
        } => product_import::products(&endpoint, &api_key, &file, batch_size.into(), quiet)
            .await
            .and_then(|s| {
                println!(
                    "imported products: {} created, {} updated, {} unchanged, {} refused",
                    s.created, s.updated, s.unchanged, s.refused
                );
                if s.refused > 0 {
                    bail!(
                        "{} lines were refused (listed above by line number)",
                        s.refused
                    );
                }
                Ok(())
            }),
        Cmd::Wallet {
            command: WalletCmd::Check { partner },
        } => wallet_check(partner).await,
        Cmd::Wallet {
            command: WalletCmd::Expire,
        } => wallet_expire().await,
    };
    if let Err(e) = result {
        eprintln!("loyalty: {e:#}");
        std::process::exit(1);
    }
}

async fn wallet_db() -> anyhow::Result<sea_orm::DatabaseConnection> {
    let settings = Service::Wallet.settings()?;
    loyalty_platform::db::connect(&settings).await
}

async fn wallet_check(partner: Option<uuid::Uuid>) -> anyhow::Result<()> {
    let db = wallet_db().await?;
    let report = loyalty_wallet::store::check::trial_balance(&db, partner, None, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for t in &report.totals {
        println!(
            "{:<24} {:>10} postings  debits {:>14}  credits {:>14}  net {}",
            t.code, t.postings, t.debits, t.credits, t.net
        );
    }
    println!(
        "{} customer accounts and {} lots checked",
        report.checked_accounts, report.checked_lots
    );
    if report.balanced() {
        println!("ledger balanced");
        Ok(())
    } else {
        for d in &report.discrepancies {
            eprintln!("discrepancy: {d}");
        }
        bail!("{} discrepancies", report.discrepancies.len())
    }
}

async fn wallet_expire() -> anyhow::Result<()> {
    let db = wallet_db().await?;
    let run = loyalty_wallet::store::jobs::sweep(&db, chrono::Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "expired {} lots ({} in all) on {} wallets; released {} reservations",
        run.lots, run.amount, run.wallets, run.reservations
    );
    Ok(())
}

async fn migrate(target: Target) -> anyhow::Result<()> {
    let services = match target {
        Target::All => ALL.to_vec(),
        Target::One(s) => vec![s],
    };
    for s in services {
        s.migrate().await?;
    }
    Ok(())
}

async fn identity_client(
    endpoint: &str,
) -> anyhow::Result<IdentityServiceClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
        .connect()
        .await
        .with_context(|| format!("connecting to identity at {endpoint}"))?;
    Ok(IdentityServiceClient::new(channel))
}

/// A gRPC error as the user should see it: the canonical code, the message, and the fields a
/// `google.rpc.BadRequest` names (unless the message says them already).
fn status(e: tonic::Status) -> anyhow::Error {
    let mut text = format!("{}: {}", code_name(e.code()), e.message());
    if let Some(bad) = e.get_error_details().bad_request() {
        for v in &bad.field_violations {
            let violation = format!("{}: {}", v.field, v.description);
            if !e.message().contains(&violation) {
                text.push_str(&format!("\n  {violation}"));
            }
        }
    }
    anyhow::anyhow!(text)
}

/// `NotFound` → `NOT_FOUND`, as grpc-status codes are written.
fn code_name(code: tonic::Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

async fn create_partner(
    remote: &Remote,
    name: &str,
    currency: &str,
    idempotency_key: Option<String>,
) -> anyhow::Result<identity::Partner> {
    let mut client = identity_client(&remote.endpoint).await?;
    let request = identity::CreatePartnerRequest {
        idempotency_key: idempotency_key.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        partner: Some(identity::Partner {
            display_name: name.to_owned(),
            default_currency_code: currency.to_owned(),
            ..Default::default()
        }),
    };
    client
        .create_partner(with_key(request, &remote.admin_key))
        .await
        .map_err(status)?
        .into_inner()
        .partner
        .context("identity answered no partner")
}

async fn create_api_key(
    remote: &Remote,
    partner: &str,
    name: &str,
    roles: &[RoleArg],
    idempotency_key: Option<String>,
) -> anyhow::Result<(String, String)> {
    let mut client = identity_client(&remote.endpoint).await?;
    let request = identity::CreateApiKeyRequest {
        idempotency_key: idempotency_key.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        partner_id: partner.to_owned(),
        display_name: name.to_owned(),
        roles: roles.iter().map(|r| r.proto()).collect(),
    };
    let created = client
        .create_api_key(with_key(request, &remote.admin_key))
        .await
        .map_err(status)?
        .into_inner();
    Ok((
        created.api_key.map(|k| k.id).unwrap_or_default(),
        created.secret,
    ))
}

/// `s` quoted for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The admin key of a dev data dir: made once, then reused.
fn admin_key(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("admin-key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        return Ok(key.trim().to_owned());
    }
    let key = loyalty_platform::auth::generate_key();
    write_private(&path, &key)?;
    Ok(key)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, format!("{contents}\n"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

async fn wait_serving(endpoint: &str, child: &mut Child, name: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{name} exited during start-up ({status})");
        }
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
            .connect()
            .await
        {
            let answer = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if answer.is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32) {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{name} did not become SERVING within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends SIGTERM to every child, then kills what is still running after 15 s.
async fn stop_all(children: &mut [(Service, Child)]) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    for (service, child) in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_err()
        {
            eprintln!("{} did not stop in time; killing it", service.name());
            let _ = child.kill().await;
        }
    }
}

async fn dev(data_dir: &Path, base_port: u16) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let data_dir = data_dir.canonicalize()?;
    let admin = admin_key(&data_dir)?;
    let exe = std::env::current_exe()?;
    let endpoint = |i: usize| format!("http://127.0.0.1:{}", base_port + i as u16);

    let mut children: Vec<(Service, Child)> = Vec::new();
    for (i, service) in ALL.iter().enumerate() {
        let mut cmd = Command::new(&exe);
        cmd.arg("serve")
            .arg(service.name())
            .env(
                "LOYALTY_SERVER__LISTEN_ADDR",
                format!("127.0.0.1:{}", base_port + i as u16),
            )
            .env(
                "LOYALTY_DATABASE__URL",
                format!(
                    "sqlite://{}/{}.db?mode=rwc",
                    data_dir.display(),
                    service.name()
                ),
            )
            .env("LOYALTY_AUTH__BOOTSTRAP_KEY", &admin)
            // What campaigns would send lands in a file to read, not with customers.
            .env(
                "LOYALTY_DELIVERY__FILE_PATH",
                data_dir.join("outbox.jsonl").display().to_string(),
            )
            .env_remove("LOYALTY_REDIS__URL")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if std::env::var_os("LOYALTY_TELEMETRY__LOG_FORMAT").is_none() {
            cmd.env("LOYALTY_TELEMETRY__LOG_FORMAT", "pretty");
        }
        if std::env::var_os("LOYALTY_TELEMETRY__LOG_FILTER").is_none() {
            cmd.env("LOYALTY_TELEMETRY__LOG_FILTER", "warn");
        }
        for (j, peer) in ALL.iter().enumerate() {
            cmd.env(
                format!("LOYALTY_PEERS__{}_URL", peer.name().to_uppercase()),
                endpoint(j),
            );
        }
        children.push((
            *service,
            cmd.spawn()
                .with_context(|| format!("starting {}", service.name()))?,
        ));
    }

    let started = async {
        for (i, (service, child)) in children.iter_mut().enumerate() {
            wait_serving(&endpoint(i), child, service.name()).await?;
        }
        let remote = Remote {
            endpoint: endpoint(0),
            admin_key: admin.clone(),
        };
        let partner =
            create_partner(&remote, "Demo Retail", "EUR", Some("demo-partner".into())).await?;
        let (_, key) = create_api_key(
            &remote,
            &partner.id,
            "demo",
            &[
                RoleArg::Admin,
                RoleArg::Pos,
                RoleArg::Marketing,
                RoleArg::Support,
            ],
            Some("demo-api-key".into()),
        )
        .await?;
        write_private(&data_dir.join("demo-api-key"), &key)?;
        anyhow::Ok((partner, key))
    };
    let (partner, key) = match started.await {
        Ok(v) => v,
        Err(e) => {
            stop_all(&mut children).await;
            return Err(e);
        }
    };

    println!(
        "\nThe loyalty platform is running (SQLite under {}):\n",
        data_dir.display()
    );
    for (i, service) in ALL.iter().enumerate() {
        println!("  {:<13} {}", service.name(), endpoint(i));
    }
    println!("\n  platform admin key  {admin}");
    println!(
        "  demo partner        {} ({})",
        partner.display_name, partner.id
    );
    println!(
        "  demo API key        {key}   (also in {}/demo-api-key)",
        data_dir.display()
    );
    // The key file as the user would type it: relative to where they stand if possible.
    let key_file = data_dir.join("demo-api-key");
    let key_file = std::env::current_dir()
        .ok()
        .and_then(|cwd| cwd.canonicalize().ok())
        .and_then(|cwd| key_file.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| key_file.clone());
    let key_file = shell_word(&key_file.display().to_string());
    println!(
        "\nTry it:\n\n  grpcurl -plaintext -H \"authorization: Bearer $(cat {key_file})\" -d '{{\"idempotency_key\": \"register-jana\", \
         \"customer\": {{\"first_name\": \"Jana\", \"properties\": {{\"tier\": \"gold\"}}}}, \
         \"identifiers\": [{{\"type\": \"IDENTIFIER_TYPE_CARD\", \"value\": \"2000 0000 0001\"}}]}}' \\\n    \
         127.0.0.1:{base_port} loyalty.identity.v1.IdentityService/CreateCustomer\n\nCtrl-C stops everything."
    );

    let signal = loyalty_platform::server::shutdown_signal();
    tokio::pin!(signal);
    let outcome = loop {
        tokio::select! {
            _ = &mut signal => break Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let exited = children
                    .iter_mut()
                    .find_map(|(s, c)| c.try_wait().ok().flatten().map(|status| (s.name(), status)));
                if let Some((name, status)) = exited {
                    break Err(anyhow::anyhow!("{name} stopped unexpectedly ({status}); stopping the suite"));
                }
            }
        }
    };
    println!("\nstopping…");
    stop_all(&mut children).await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_are_printed_the_way_grpc_names_them() {
        assert_eq!(code_name(tonic::Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::Unauthenticated), "UNAUTHENTICATED");
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
    }

    fn status_text(s: tonic::Status) -> String {
        super::status(s).to_string()
    }

    #[test]
    fn an_error_shows_the_fields_a_bad_request_names() {
        let status = tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            "invalid partner",
            tonic_types::ErrorDetails::with_bad_request_violation(
                "partner.default_currency_code",
                "must be an ISO 4217 code",
            ),
        );
        assert_eq!(
            status_text(status),
            "INVALID_ARGUMENT: invalid partner\n  partner.default_currency_code: must be an ISO 4217 code"
        );
        let already_said = tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            "partner_id: must be a UUID",
            tonic_types::ErrorDetails::with_bad_request_violation("partner_id", "must be a UUID"),
        );
        assert_eq!(
            status_text(already_said),
            "INVALID_ARGUMENT: partner_id: must be a UUID"
        );
    }

    #[test]
    fn migrate_takes_one_service_or_all() {
        assert!(matches!(service_or_all("all"), Ok(Target::All)));
        assert!(matches!(
            service_or_all("wallet"),
            Ok(Target::One(Service::Wallet))
        ));
        assert!(service_or_all("payments").is_err());
    }

    #[test]
    fn paths_are_quoted_for_the_shell_only_when_needed() {
        assert_eq!(shell_word("data/demo-api-key"), "data/demo-api-key");
        assert_eq!(shell_word("my data/key"), "'my data/key'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
