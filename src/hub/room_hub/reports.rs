//! Members' reports: `/report NAME [reason]`, the moderators' `/reports` list and `/resolve N`.
//!
//! A report records the last lines NAME said in the room (from the store when there is one, else
//! from the room's history in memory), is kept in the store and audited, and is shown to the
//! moderators online at once. What a member may report is bounded per [`Reporter`] (an
//! account, an address, or a name), not per connection, so neither a rename nor a reconnect
//! buys more reports than `[moderation] reports_per_hour` and `open_reports_per_member` allow.
//! The reports themselves are kept in the moderation queue ([`super::queue`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::persistence::audit;
use super::{RoomHub, Until};
use crate::event::ClientId;
use crate::hub::delivery::{Delivery, ReportView};
use crate::names::NameKey;
use crate::store::{Change, LineKind, ReportRecord};

/// Lines of the reported member's recorded with a report.
const REPORT_CONTEXT: usize = 20;

/// Who a report counts against: an account, a guest's address, or (a report restored from the
/// store) a name. A rename or a reconnect does not make a new one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Reporter {
    Account(NameKey),
    Address(std::net::IpAddr),
    Name(NameKey),
}

impl RoomHub {
    /// `/report NAME [reason]` by `id` in `room`: the last lines NAME said there are recorded.
    pub(super) fn report(
        &mut self,
        id: ClientId,
        room: &Arc<str>,
        name: &str,
        reason: Option<String>,
    ) {
        let Some(reporter) = self.members.get(&id).map(|m| m.client.name()) else {
            return;
        };
        if NameKey::new(name) == NameKey::new(&reporter) {
            self.tell(id, "You cannot report yourself.");
            return;
        }
        let reporter_key = self.reporter(id);
        if let Some(refusal) = self.report_refusal(&reporter_key) {
            self.tell(id, &refusal);
            return;
        }
        let per_hour = self.settings.moderation.reports_per_hour;
        let now = Instant::now();
        let recent = self
            .queue
            .reported_at
            .entry(reporter_key.clone())
            .or_default();
        while recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(3600))
        {
            recent.pop_front();
        }
        if recent.len() >= per_hour {
            self.tell(
                id,
                &format!("You have made {per_hour} reports in the last hour, the most allowed; the moderators have them."),
            );
            return;
        }
        recent.push_back(now);
        let reason = reason.unwrap_or_default();
        let (room, name) = (room.clone(), name.to_owned());
        let from_memory = self.recent_lines_in_memory(&room, &name);
        let Some(store) = self.settings.store.clone() else {
            self.file_report(id, reporter_key, reporter, name, room, reason, from_memory);
            return;
        };
        // The store keeps more of the room than the hub does; its answer comes back here.
        let me = self.me.clone();
        let (q_room, q_name) = (room.to_string(), name.clone());
        let asked = store.lines_by(
            &q_room,
            &q_name,
            REPORT_CONTEXT,
            Box::new(move |lines| {
                let context = match lines {
                    Ok(lines) => lines
                        .iter()
                        .map(|l| match l.kind {
                            LineKind::Chat => format!("{}: {}", l.sender, l.text),
                            LineKind::Action => format!("* {} {}", l.sender, l.text),
                        })
                        .collect(),
                    Err(_) => from_memory,
                };
                let _ = me.blocking_send(super::Request::Continue(Box::new(move |hub| {
                    hub.file_report(id, reporter_key, reporter, name, room, reason, context);
                })));
            }),
        );
        if let Err(error) = asked {
            self.tell(id, &format!("The report could not be made ({error})."));
        }
    }

    /// What `name` said in `room` among the lines the hub remembers.
    pub(super) fn recent_lines_in_memory(&self, room: &str, name: &str) -> Vec<String> {
        let key = NameKey::new(name);
        let Some(state) = self.rooms.get(room) else {
            return Vec::new();
        };
        let lines: Vec<String> = state
            .history
            .iter()
            .filter_map(|d| match d {
                Delivery::History {
                    kind, from, text, ..
                } if NameKey::new(from) == key => Some(match kind {
                    LineKind::Chat => format!("{from}: {text}"),
                    LineKind::Action => format!("* {from} {text}"),
                }),
                _ => None,
            })
            .collect();
        let skip = lines.len().saturating_sub(REPORT_CONTEXT);
        lines.into_iter().skip(skip).collect()
    }

    /// Who `id` counts as when reporting (see [`Reporter`]).
    pub(super) fn reporter(&self, id: ClientId) -> Reporter {
        let Some(member) = self.members.get(&id) else {
            return Reporter::Name(NameKey::new(""));
        };
        let key = NameKey::new(&member.client.name());
        let addr = member.client.addr().ip();
        // A guest counts by address even at an exempt one: exemption lifts connection limits and
        // address bans, not this (a rename there would otherwise start the count afresh).
        if self.settings.registered.contains_key(&key) {
            Reporter::Account(key)
        } else {
            Reporter::Address(addr)
        }
    }

    /// Why a report by `reporter` cannot be taken now, if the queue is at one of its bounds:
    /// `[moderation] max_open_reports` in all, `open_reports_per_member` from one member.
    pub(super) fn report_refusal(&self, reporter: &Reporter) -> Option<String> {
        let settings = &self.settings.moderation;
        let open = self.queue.reports.len();
        if open >= settings.max_open_reports {
            return Some(format!(
                "The moderators' queue is full ({open} open reports); your report was not taken. Try again once they have worked through it."
            ));
        }
        let mine = self
            .queue
            .reporters
            .values()
            .filter(|r| *r == reporter)
            .count();
        if mine >= settings.open_reports_per_member {
            return Some(format!(
                "You have {mine} open reports, the most allowed; your report was not taken. Wait until a moderator has dealt with them."
            ));
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn file_report(
        &mut self,
        id: ClientId,
        reporter_key: Reporter,
        reporter: Arc<str>,
        reported: String,
        room: Arc<str>,
        reason: String,
        context: Vec<String>,
    ) {
        // Checked again: other reports may have been filed while this one's context was read.
        if let Some(refusal) = self.report_refusal(&reporter_key) {
            self.tell(id, &refusal);
            return;
        }
        self.queue.last_report += 1;
        let number = self.queue.last_report;
        let view = Arc::new(ReportView {
            id: number,
            reporter: reporter.clone(),
            reported: Arc::from(reported.as_str()),
            room: room.clone(),
            reason: reason.clone(),
            context: context.clone(),
            at: SystemTime::now(),
        });
        self.queue.reports.insert(number, view.clone());
        self.queue.reporters.insert(number, reporter_key);
        tracing::info!(report = number, reporter = %reporter, reported = %reported, room = %room, "report made");
        let record = Change::Report(ReportRecord {
            id: number,
            at: view.at,
            reporter: reporter.to_string(),
            reported,
            room: room.to_string(),
            reason,
            context,
        });
        self.persist_and_tell(
            id,
            vec![record],
            format!("Thank you; the moderators have your report (#{number})."),
        );
        self.tell_moderators(&Delivery::Reported(view));
    }

    /// `/reports [PAGE]`.
    pub(super) fn list_reports(&mut self, id: ClientId, page: usize) {
        if self.queue.reports.is_empty() {
            self.tell(id, "No reports are open.");
            return;
        }
        let entries: Vec<Vec<String>> = self
            .queue
            .reports
            .values()
            .map(|r| {
                let age = SystemTime::now()
                    .duration_since(r.at)
                    .map(super::describe_duration)
                    .unwrap_or_default();
                let reason = if r.reason.is_empty() {
                    "no reason given"
                } else {
                    &r.reason
                };
                let mut lines = vec![format!(
                    "#{} {} reported {} in {}, {age} ago: {reason}",
                    r.id, r.reporter, r.reported, r.room
                )];
                lines.extend(r.context.iter().map(|l| format!("  {l}")));
                lines
            })
            .collect();
        let total = entries.len();
        self.tell_page(id, "reports", "Open reports", total, entries, page);
    }

    /// `/resolve N [note]`.
    pub(super) fn resolve(&mut self, id: ClientId, actor: &str, number: u64, note: Option<String>) {
        let Some(report) = self.queue.reports.remove(&number) else {
            self.tell(id, &format!("No open report #{number}."));
            return;
        };
        self.queue.reporters.remove(&number);
        let note = note.unwrap_or_default();
        let changes = vec![
            Change::Resolve {
                id: number,
                by: actor.to_owned(),
                note: note.clone(),
            },
            audit(
                actor,
                &report.reported,
                "resolve",
                &format!("report #{number}: {note}"),
                Until::Lifted,
            ),
        ];
        self.persist_and_tell(id, changes, format!("Report #{number} resolved."));
        self.tell_moderators(&Delivery::QueueDone {
            what: "report",
            id: number,
            outcome: "resolved",
            by: Arc::from(actor),
        });
    }
}
