//! Campaigns: an ad hoc message to one audience (seed 001: the only group a campaign may
//! target), its states and the rules between them.
//!
//! ```text
//! DRAFT ──launch──▶ SCHEDULED ──schedule time──▶ SENDING ──every message handed over──▶ SENT
//!   │                  │  ▲                         │  ▲
//!   │                  pause│resume                 pause│resume
//!   │                  ▼  │                         ▼  │
//!   │                 PAUSED ◀──────────────────── PAUSED
//!   └─ delete          SCHEDULED, SENDING, PAUSED ──cancel──▶ CANCELLED
//! ```
//!
//! Launching locks the audience for good (segmentation's `LockAudience`); nothing undoes it.
use chrono::{DateTime, Duration, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Channel;

/// Most messages a campaign sends per minute.
pub const MAX_SEND_RATE_PER_MINUTE: i32 = 100_000;
/// Furthest ahead a launch may schedule the sending.
pub const MAX_SCHEDULE_AHEAD_DAYS: i64 = 366;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CampaignState {
    Draft,
    Scheduled,
    Sending,
    Paused,
    Sent,
    Cancelled,
}

impl CampaignState {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Draft => "draft",
            CampaignState::Scheduled => "scheduled",
            CampaignState::Sending => "sending",
            CampaignState::Paused => "paused",
            CampaignState::Sent => "sent",
            CampaignState::Cancelled => "cancelled",
        }
    }

    pub fn parse_str(s: &str) -> Option<CampaignState> {
        Some(match s {
            "draft" => CampaignState::Draft,
            "scheduled" => CampaignState::Scheduled,
            "sending" => CampaignState::Sending,
            "paused" => CampaignState::Paused,
            "sent" => CampaignState::Sent,
            "cancelled" => CampaignState::Cancelled,
            _ => return None,
        })
    }
}

/// Hours of the day messages may go out, in the campaign's time zone: from `start_hour`
/// (included) to `end_hour` (excluded), e.g. 9..20.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendWindow {
    pub start_hour: u32,
    pub end_hour: u32,
}

/// A broken campaign rule: FAILED_PRECONDITION with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignRule {
    /// Launched: only the name and note of a SCHEDULED campaign may change, nothing else.
    AlreadyLaunched,
    /// Launching needs this field set.
    Incomplete(&'static str),
    /// Still a draft: nothing to cancel, pause or resume.
    NotLaunched,
    /// SENT or CANCELLED: it is over.
    Finished,
    /// Only a SCHEDULED or SENDING campaign can be paused.
    NotRunning,
    /// Only a PAUSED campaign can be resumed.
    NotPaused,
}

impl CampaignRule {
    pub fn reason(self) -> &'static str {
        match self {
            CampaignRule::AlreadyLaunched => "CAMPAIGN_ALREADY_LAUNCHED",
            CampaignRule::Incomplete(_) => "CAMPAIGN_INCOMPLETE",
            CampaignRule::NotLaunched => "CAMPAIGN_NOT_LAUNCHED",
            CampaignRule::Finished => "CAMPAIGN_FINISHED",
            CampaignRule::NotRunning => "CAMPAIGN_NOT_RUNNING",
            CampaignRule::NotPaused => "CAMPAIGN_NOT_PAUSED",
        }
    }

    pub fn message(self) -> String {
        match self {
            CampaignRule::AlreadyLaunched => {
                "the campaign was launched; only a scheduled campaign's name and note can change"
                    .into()
            }
            CampaignRule::Incomplete(field) => format!("launching needs {field}"),
            CampaignRule::NotLaunched => "the campaign is a draft".into(),
            CampaignRule::Finished => "the campaign is sent or cancelled".into(),
            CampaignRule::NotRunning => "only a scheduled or sending campaign can pause".into(),
            CampaignRule::NotPaused => "only a paused campaign can resume".into(),
        }
    }
}

/// A campaign. `version` grows with every change; its etag is `"v<version>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: Uuid,
    pub display_name: String,
    pub channel: Channel,
    pub message_template_id: Option<Uuid>,
    pub audience_id: Option<Uuid>,
    /// A campaign reward: each recipient gets a voucher of it, `{{ voucher.code }}`.
    pub reward_id: Option<Uuid>,
    pub state: CampaignState,
    /// When sending starts (set at launch; the launch time when not scheduled).
    pub schedule_at: Option<DateTime<Utc>>,
    pub launched_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Messages per minute; 0 = as fast as the channel's adapter allows.
    pub send_rate_per_minute: i32,
    pub send_window: Option<SendWindow>,
    /// IANA time zone of the send window, e.g. `Europe/Prague`.
    pub time_zone: String,
    pub note: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Campaign {
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// Checks every field, reporting under `campaign.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        let f = |n: &str| format!("campaign.{n}");
        if !(1..=200).contains(&self.display_name.trim().chars().count()) {
            v.add(f("display_name"), "must be 1..200 characters");
        }
        if self.note.chars().count() > 2_000 {
            v.add(f("note"), "must be at most 2000 characters");
        }
        if !(0..=MAX_SEND_RATE_PER_MINUTE).contains(&self.send_rate_per_minute) {
            v.add(
                f("send_rate_per_minute"),
                format!("must be 0..{MAX_SEND_RATE_PER_MINUTE}"),
            );
        }
        if let Some(w) = self.send_window
            && !(w.start_hour < w.end_hour && w.end_hour <= 24)
        {
            v.add(
                f("send_window"),
                "start_hour must be 0..23 and before end_hour, at most 24",
            );
        }
        if self.time_zone.parse::<Tz>().is_err() {
            v.add(
                f("time_zone"),
                "must be an IANA time zone such as Europe/Prague",
            );
        }
    }

    /// Whether `fields` may change now: anything of a DRAFT, the name and note of a
    /// SCHEDULED campaign.
    pub fn check_editable(&self, fields: &[&str]) -> Result<(), CampaignRule> {
        match self.state {
            CampaignState::Draft => Ok(()),
            CampaignState::Scheduled
                if fields.iter().all(|f| matches!(*f, "display_name" | "note")) =>
            {
                Ok(())
            }
            _ => Err(CampaignRule::AlreadyLaunched),
        }
    }

    /// Only a DRAFT is deleted; a launched campaign stays as the record of what was sent.
    pub fn check_deletable(&self) -> Result<(), CampaignRule> {
        match self.state {
            CampaignState::Draft => Ok(()),
            _ => Err(CampaignRule::AlreadyLaunched),
        }
    }

    /// The campaign launched at `now`, sending from `schedule` (or at once): SCHEDULED when
    /// that is later than `now`, else SENDING. Needs a template and an audience.
    pub fn launched(
        &self,
        now: DateTime<Utc>,
        schedule: Option<DateTime<Utc>>,
    ) -> Result<Campaign, CampaignRule> {
        if self.state != CampaignState::Draft {
            return Err(CampaignRule::AlreadyLaunched);
        }
        if self.message_template_id.is_none() {
            return Err(CampaignRule::Incomplete("message_template_id"));
        }
        if self.audience_id.is_none() {
            return Err(CampaignRule::Incomplete("audience_id"));
        }
        let start = schedule.unwrap_or(now).max(now);
        Ok(Campaign {
            state: if start > now {
                CampaignState::Scheduled
            } else {
                CampaignState::Sending
            },
            schedule_at: Some(start),
            launched_at: Some(now),
            ..self.changed(now)
        })
    }

    /// The campaign cancelled at `now`: its unsent messages are dropped; the audience stays
    /// locked.
    pub fn cancelled(&self, now: DateTime<Utc>) -> Result<Campaign, CampaignRule> {
        match self.state {
            CampaignState::Scheduled | CampaignState::Sending | CampaignState::Paused => {
                Ok(Campaign {
                    state: CampaignState::Cancelled,
                    cancelled_at: Some(now),
                    ..self.changed(now)
                })
            }
            CampaignState::Draft => Err(CampaignRule::NotLaunched),
            CampaignState::Sent | CampaignState::Cancelled => Err(CampaignRule::Finished),
        }
    }

    /// The campaign paused at `now`: nothing more goes out until it resumes.
    pub fn paused(&self, now: DateTime<Utc>) -> Result<Campaign, CampaignRule> {
        match self.state {
            CampaignState::Scheduled | CampaignState::Sending => Ok(Campaign {
                state: CampaignState::Paused,
                ..self.changed(now)
            }),
            CampaignState::Draft => Err(CampaignRule::NotLaunched),
            CampaignState::Sent | CampaignState::Cancelled => Err(CampaignRule::Finished),
            CampaignState::Paused => Err(CampaignRule::NotRunning),
        }
    }

    /// The campaign resumed at `now`: SCHEDULED again while its start is ahead, else SENDING.
    pub fn resumed(&self, now: DateTime<Utc>) -> Result<Campaign, CampaignRule> {
        if self.state != CampaignState::Paused {
            return Err(match self.state {
                CampaignState::Draft => CampaignRule::NotLaunched,
                CampaignState::Sent | CampaignState::Cancelled => CampaignRule::Finished,
                _ => CampaignRule::NotPaused,
            });
        }
        let ahead = self.schedule_at.is_some_and(|s| s > now);
        Ok(Campaign {
            state: if ahead {
                CampaignState::Scheduled
            } else {
                CampaignState::Sending
            },
            ..self.changed(now)
        })
    }

    /// A SCHEDULED campaign whose start came at `now`: SENDING.
    pub fn started(&self, now: DateTime<Utc>) -> Campaign {
        Campaign {
            state: CampaignState::Sending,
            ..self.changed(now)
        }
    }

    /// The campaign after its last message was handed over at `now`.
    pub fn sent(&self, now: DateTime<Utc>) -> Campaign {
        Campaign {
            state: CampaignState::Sent,
            finished_at: Some(now),
            ..self.changed(now)
        }
    }

    fn changed(&self, now: DateTime<Utc>) -> Campaign {
        Campaign {
            version: self.version.saturating_add(1),
            updated_at: Some(now),
            ..self.clone()
        }
    }

    /// The earliest time from `at` on when a message of this campaign may go out: `at` inside
    /// the send window (or without one), else the next opening of the window in the
    /// campaign's time zone.
    pub fn next_send_time(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let (Some(w), Ok(tz)) = (self.send_window, self.time_zone.parse::<Tz>()) else {
            return at;
        };
        let local = at.with_timezone(&tz);
        let hour = local.hour();
        if (w.start_hour..w.end_hour).contains(&hour) {
            return at;
        }
        let day = if hour < w.start_hour {
            local.date_naive()
        } else {
            local.date_naive() + Duration::days(1)
        };
        let opening = NaiveTime::from_hms_opt(w.start_hour, 0, 0).unwrap_or(NaiveTime::MIN);
        // A time skipped by a daylight-saving change opens an hour later.
        tz.from_local_datetime(&day.and_time(opening))
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(day.and_time(opening) + Duration::hours(1)))
                    .earliest()
            })
            .map_or(at, |t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Campaign {
        Campaign {
            id: Uuid::now_v7(),
            display_name: "Spring".into(),
            channel: Channel::Email,
            message_template_id: Some(Uuid::now_v7()),
            audience_id: Some(Uuid::now_v7()),
            reward_id: None,
            state: CampaignState::Draft,
            schedule_at: None,
            launched_at: None,
            finished_at: None,
            cancelled_at: None,
            send_rate_per_minute: 0,
            send_window: None,
            time_zone: "UTC".into(),
            note: String::new(),
            version: 1,
            created_at: Utc::now(),
            updated_at: None,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn problems(c: &Campaign) -> Vec<String> {
        let mut v = Violations::new();
        c.validate(&mut v);
        v.into_vec().into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_launch_needs_a_template_and_an_audience_and_schedules_or_sends() {
        let now = at("2026-12-07T10:00:00Z");
        let mut c = draft();
        c.audience_id = None;
        assert_eq!(
            c.launched(now, None),
            Err(CampaignRule::Incomplete("audience_id"))
        );
        let c = draft();
        let sending = c.launched(now, None).unwrap();
        assert_eq!(sending.state, CampaignState::Sending);
        assert_eq!(
            (sending.launched_at, sending.schedule_at),
            (Some(now), Some(now))
        );
        assert_eq!(sending.version, 2);
        let later = at("2026-12-08T09:00:00Z");
        let scheduled = c.launched(now, Some(later)).unwrap();
        assert_eq!(scheduled.state, CampaignState::Scheduled);
        assert_eq!(scheduled.schedule_at, Some(later));
        // A schedule in the past sends now.
        let past = c.launched(now, Some(at("2026-12-01T00:00:00Z"))).unwrap();
        assert_eq!(
            (past.state, past.schedule_at),
            (CampaignState::Sending, Some(now))
        );
        assert_eq!(
            sending.launched(now, None),
            Err(CampaignRule::AlreadyLaunched)
        );
    }

    #[test]
    fn states_move_only_along_the_diagram() {
        let now = at("2026-12-07T10:00:00Z");
        let later = at("2026-12-08T09:00:00Z");
        let draft = draft();
        assert_eq!(draft.cancelled(now), Err(CampaignRule::NotLaunched));
        assert_eq!(draft.paused(now), Err(CampaignRule::NotLaunched));
        assert!(draft.check_deletable().is_ok());
        assert!(draft.check_editable(&["audience_id"]).is_ok());

        let scheduled = draft.launched(now, Some(later)).unwrap();
        assert!(scheduled.check_editable(&["display_name", "note"]).is_ok());
        assert_eq!(
            scheduled.check_editable(&["audience_id"]),
            Err(CampaignRule::AlreadyLaunched)
        );
        assert_eq!(
            scheduled.check_deletable(),
            Err(CampaignRule::AlreadyLaunched)
        );

        // Paused while scheduled, resumed before the start: scheduled again; after it: sending.
        let paused = scheduled.paused(now).unwrap();
        assert_eq!(paused.state, CampaignState::Paused);
        assert_eq!(paused.paused(now), Err(CampaignRule::NotRunning));
        assert_eq!(
            paused.check_editable(&["note"]),
            Err(CampaignRule::AlreadyLaunched)
        );
        assert_eq!(paused.resumed(now).unwrap().state, CampaignState::Scheduled);
        let resumed = paused.resumed(at("2026-12-09T00:00:00Z")).unwrap();
        assert_eq!(resumed.state, CampaignState::Sending);
        assert_eq!(resumed.resumed(now), Err(CampaignRule::NotPaused));

        let sent = resumed.sent(now);
        assert_eq!(sent.state, CampaignState::Sent);
        assert_eq!(sent.cancelled(now), Err(CampaignRule::Finished));
        assert_eq!(sent.paused(now), Err(CampaignRule::Finished));
        let cancelled = resumed.cancelled(now).unwrap();
        assert_eq!(
            (cancelled.state, cancelled.cancelled_at),
            (CampaignState::Cancelled, Some(now))
        );
        assert_eq!(cancelled.resumed(now), Err(CampaignRule::Finished));
        assert!(cancelled.version > resumed.version);
        for s in [
            CampaignState::Draft,
            CampaignState::Scheduled,
            CampaignState::Sending,
            CampaignState::Paused,
            CampaignState::Sent,
            CampaignState::Cancelled,
        ] {
            assert_eq!(CampaignState::parse_str(s.as_str()), Some(s));
        }
    }

    #[test]
    fn the_send_window_opens_in_the_campaigns_time_zone() {
        let mut c = draft();
        c.send_window = Some(SendWindow {
            start_hour: 9,
            end_hour: 20,
        });
        c.time_zone = "Europe/Prague".into();
        // 10:00 UTC is 11:00 in Prague (winter, UTC+1): inside.
        let inside = at("2026-12-07T10:00:00Z");
        assert_eq!(c.next_send_time(inside), inside);
        // 19:30 UTC is 20:30 in Prague: the next opening is 09:00 Prague = 08:00 UTC tomorrow.
        assert_eq!(
            c.next_send_time(at("2026-12-07T19:30:00Z")),
            at("2026-12-08T08:00:00Z")
        );
        // 05:00 UTC is 06:00 in Prague: today at 09:00 Prague.
        assert_eq!(
            c.next_send_time(at("2026-12-07T05:00:00Z")),
            at("2026-12-07T08:00:00Z")
        );
        // Summer time (UTC+2).
        assert_eq!(
            c.next_send_time(at("2026-07-01T04:00:00Z")),
            at("2026-07-01T07:00:00Z")
        );
        c.send_window = None;
        assert_eq!(
            c.next_send_time(at("2026-12-07T23:00:00Z")),
            at("2026-12-07T23:00:00Z")
        );
    }

    #[test]
    fn fields_are_checked() {
        let mut c = draft();
        assert!(problems(&c).is_empty());
        c.display_name = " ".into();
        c.send_rate_per_minute = -1;
        c.send_window = Some(SendWindow {
            start_hour: 20,
            end_hour: 9,
        });
        c.time_zone = "Mars/Olympus".into();
        c.note = "x".repeat(2_001);
        assert_eq!(
            problems(&c),
            [
                "campaign.display_name",
                "campaign.note",
                "campaign.send_rate_per_minute",
                "campaign.send_window",
                "campaign.time_zone"
            ]
        );
    }
}
