//! `loadgen campaign`: the campaign benchmark of issue #8. On a partner whose customers were
//! written by `scripts/sql/campaign-dataset.sql`, it makes an email audience of all of them
//! (created through SegmentationService, its members written in one statement), a CAMPAIGN
//! reward, a template that shows each recipient's voucher code, and a campaign; launches it
//! and times the launch until the campaign is SENT, then checks the file adapter's output: one
//! line per recipient, each with its own message id and voucher code. Goal: ≥ 20,000
//! messages/s end to end.
use std::{
    collections::HashSet,
    io::BufRead,
    time::{Duration, Instant},
};

use loyalty_proto::{
    campaigns::v1::{self as pb, campaigns_service_client::CampaignsServiceClient},
    rewards::v1::{self as rewards, rewards_service_client::RewardsServiceClient},
    segmentation::v1::{self as seg, segmentation_service_client::SegmentationServiceClient},
    types::v1 as types,
};
use serde::Serialize;
use tonic::transport::Endpoint;
use uuid::Uuid;

use crate::grpc::{GrpcArgs, authed};

/// Messages per second end to end (issue #8).
pub const GOAL_MESSAGES_PER_SEC: f64 = 20_000.0;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The campaigns service (`--endpoint`) and the partner's API key.
    #[command(flatten)]
    pub grpc: GrpcArgs,
    /// The segmentation service.
    #[arg(long)]
    pub segmentation: String,
    /// The rewards service.
    #[arg(long)]
    pub rewards: String,
    /// The database segmentation uses, to write the audience's members.
    #[arg(long, env = "LOADGEN_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// The partner the API key belongs to (the dataset's customers are its).
    #[arg(long)]
    pub partner: Uuid,
    /// Customers the dataset made (the audience takes them all).
    #[arg(long, default_value_t = 1_000_000)]
    pub customers: i64,
    /// The file the campaigns service's file adapter writes.
    #[arg(long)]
    pub outbox: std::path::PathBuf,
    /// The reward's `max_vouchers_per_customer` (0: no limit). A limit makes rewards count
    /// each batch's holders under the reward's lock, so batches are issued one at a time.
    #[arg(long, default_value_t = 1)]
    pub max_vouchers_per_customer: i32,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// What `loadgen campaign` reports; times in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub recipients: i64,
    /// From the launch until every message was made (audience exported, vouchers issued).
    pub queued_secs: f64,
    /// From the launch until the campaign was SENT.
    pub sent_secs: f64,
    pub messages_per_sec: f64,
    pub sent_count: i64,
    pub suppressed_count: i64,
    pub failed_count: i64,
    pub vouchers: i64,
    /// Lines in the outbox file, and distinct message ids and voucher codes among them.
    pub lines: usize,
    pub distinct_messages: usize,
    pub distinct_codes: usize,
}

async fn connect(url: &str) -> anyhow::Result<tonic::transport::Channel> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .timeout(Duration::from_secs(600))
        .connect()
        .await?)
}

pub async fn run(args: Args) -> anyhow::Result<Report> {
    let bearer = args.grpc.bearer()?;
    let mut campaigns = CampaignsServiceClient::new(args.grpc.connect().await?.remove(0));
    let mut segmentation = SegmentationServiceClient::new(connect(&args.segmentation).await?);
    let mut rewards = RewardsServiceClient::new(connect(&args.rewards).await?);
    let run_id = Uuid::now_v7().simple().to_string();

    // The audience: created by the service (nobody matches yet: the dataset writes no search
    // facts), then all the dataset's customers written as its members.
    let audience = segmentation
        .create_audience(authed(
            seg::CreateAudienceRequest {
                idempotency_key: format!("bench-audience-{run_id}"),
                audience: Some(seg::Audience {
                    display_name: format!("Everyone {run_id}"),
                    channel: types::CommunicationChannel::Email as i32,
                    criterion: Some(seg::Criterion {
                        kind: Some(seg::criterion::Kind::Condition(seg::Condition {
                            field: "customer.city".into(),
                            operator: seg::ComparisonOperator::Equal as i32,
                            values: vec![seg::Value {
                                kind: Some(seg::value::Kind::StringValue("Praha".into())),
                            }],
                        })),
                    }),
                    ..Default::default()
                }),
            },
            &bearer,
        ))
        .await?
        .into_inner()
        .audience
        .ok_or_else(|| anyhow::anyhow!("CreateAudience answered no audience"))?;
    let audience_id = Uuid::parse_str(&audience.id)?;
    let db = crate::db::pool(&args.database_url, "segmentation", 1).await?;
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO audience_members (audience_id, customer_id, partner_id, added_at, cause) \
         SELECT $1, md5($2::text || '-' || i)::uuid, $2, now(), 'creation' \
         FROM generate_series(1::bigint, $3) AS i ON CONFLICT DO NOTHING",
    )
    .bind(audience_id)
    .bind(args.partner)
    .bind(args.customers)
    .execute(&db)
    .await?;
    sqlx::query("UPDATE audiences SET member_count = $2 WHERE id = $1")
        .bind(audience_id)
        .bind(args.customers)
        .execute(&db)
        .await?;
    println!(
        "audience {audience_id}: {} members written in {:.1} s",
        args.customers,
        started.elapsed().as_secs_f64()
    );

    let reward = rewards
        .create_reward(authed(
            rewards::CreateRewardRequest {
                idempotency_key: format!("bench-reward-{run_id}"),
                reward: Some(rewards::Reward {
                    display_name: "Ten percent off".into(),
                    r#type: rewards::RewardType::Campaign as i32,
                    benefit: Some(rewards::reward::Benefit::CartPercentageDiscount(
                        rewards::CartPercentageDiscount { basis_points: 1000 },
                    )),
                    voucher_validity_days: 30,
                    max_vouchers_per_customer: args.max_vouchers_per_customer,
                    voucher_code_prefix: "TEN".into(),
                    ..Default::default()
                }),
            },
            &bearer,
        ))
        .await?
        .into_inner()
        .reward
        .ok_or_else(|| anyhow::anyhow!("CreateReward answered no reward"))?;
    let template = campaigns
        .create_message_template(authed(
            pb::CreateMessageTemplateRequest {
                idempotency_key: format!("bench-template-{run_id}"),
                message_template: Some(pb::MessageTemplate {
                    display_name: "Ten percent off".into(),
                    channel: pb::Channel::Email as i32,
                    kind: pb::TemplateKind::Campaign as i32,
                    subject: "{{ customer.first_name }}, 10 % off with {{ voucher.code }}".into(),
                    body: "<p>Hello {{ customer.first_name }},</p>\
                           <p>show <b>{{ voucher.code }}</b> at the till.</p>\
                           <p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>"
                        .into(),
                    text_body: "Hello {{ customer.first_name }}, show {{ voucher.code }} at the \
                                till. Unsubscribe: {{ unsubscribe_url }}"
                        .into(),
                    sender_address: "news@shop.example".into(),
                    ..Default::default()
                }),
            },
            &bearer,
        ))
        .await?
        .into_inner()
        .message_template
        .ok_or_else(|| anyhow::anyhow!("CreateMessageTemplate answered no template"))?;
    let draft = campaigns
        .create_campaign(authed(
            pb::CreateCampaignRequest {
                idempotency_key: format!("bench-campaign-{run_id}"),
                campaign: Some(pb::Campaign {
                    display_name: format!("Benchmark {run_id}"),
                    channel: pb::Channel::Email as i32,
                    message_template_id: template.id,
                    audience_id: audience.id.clone(),
                    reward_id: reward.id,
                    ..Default::default()
                }),
            },
            &bearer,
        ))
        .await?
        .into_inner()
        .campaign
        .ok_or_else(|| anyhow::anyhow!("CreateCampaign answered no campaign"))?;

    let started = Instant::now();
    campaigns
        .launch_campaign(authed(
            pb::LaunchCampaignRequest {
                idempotency_key: format!("bench-launch-{run_id}"),
                campaign_id: draft.id.clone(),
                schedule_time: None,
            },
            &bearer,
        ))
        .await?;
    let bar = indicatif::ProgressBar::new(args.customers as u64);
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} sent ({per_sec})",
    )?);
    let mut queued_secs = None;
    // The state is polled four times a second through ListCampaigns (no statistics); the
    // statistics, which count the campaign's messages (about a second of database time at a
    // million), only every five seconds for the progress bar and once at the end.
    let mut polls = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        polls += 1;
        let sent = campaigns
            .list_campaigns(authed(
                pb::ListCampaignsRequest {
                    state: pb::CampaignState::Sent as i32,
                    page_size: 100,
                    ..Default::default()
                },
                &bearer,
            ))
            .await?
            .into_inner()
            .campaigns
            .iter()
            .any(|c| c.id == draft.id);
        if sent {
            break;
        }
        if polls.is_multiple_of(20) {
            let stats = statistics(&mut campaigns, &bearer, &draft.id).await?;
            bar.set_position(stats.sent_count.max(0) as u64);
            if queued_secs.is_none() && stats.target_count >= args.customers {
                queued_secs = Some(started.elapsed().as_secs_f64());
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "the campaign was not sent within an hour"
        );
    }
    let sent_secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let stats = statistics(&mut campaigns, &bearer, &draft.id).await?;

    // The file adapter's output: one line per recipient, each its own message and code.
    let file = std::io::BufReader::new(std::fs::File::open(&args.outbox)?);
    let (mut lines, mut ids, mut codes) = (0usize, HashSet::new(), HashSet::new());
    for line in file.lines() {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        lines += 1;
        ids.insert(v["message_id"].as_str().unwrap_or_default().to_owned());
        let subject = v["subject"].as_str().unwrap_or_default();
        if let Some(code) = subject.rsplit(' ').next() {
            codes.insert(code.to_owned());
        }
    }
    let report = Report {
        recipients: args.customers,
        queued_secs: queued_secs.unwrap_or(sent_secs),
        sent_secs,
        messages_per_sec: stats.sent_count as f64 / sent_secs,
        sent_count: stats.sent_count,
        suppressed_count: stats.suppressed_count,
        failed_count: stats.failed_count,
        vouchers: stats.voucher_issued_count,
        lines,
        distinct_messages: ids.len(),
        distinct_codes: codes.len(),
    };
    println!(
        "campaign to {} recipients: all queued after {:.1} s, SENT after {:.1} s",
        report.recipients, report.queued_secs, report.sent_secs
    );
    println!(
        "sent {} (suppressed {}, failed {}), vouchers {}: {:.0} messages/s end to end \
         (goal ≥ {GOAL_MESSAGES_PER_SEC:.0}: {})",
        report.sent_count,
        report.suppressed_count,
        report.failed_count,
        report.vouchers,
        report.messages_per_sec,
        if report.messages_per_sec >= GOAL_MESSAGES_PER_SEC {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "outbox: {} lines, {} distinct message ids, {} distinct voucher codes",
        report.lines, report.distinct_messages, report.distinct_codes
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report)
}

async fn statistics(
    campaigns: &mut CampaignsServiceClient<tonic::transport::Channel>,
    bearer: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    id: &str,
) -> anyhow::Result<pb::CampaignStatistics> {
    Ok(campaigns
        .get_campaign(authed(
            pb::GetCampaignRequest {
                campaign_id: id.to_owned(),
            },
            bearer,
        ))
        .await?
        .into_inner()
        .campaign
        .ok_or_else(|| anyhow::anyhow!("GetCampaign answered no campaign"))?
        .statistics
        .unwrap_or_default())
}
