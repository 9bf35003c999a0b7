//! The moderation queue: lines a filter held for review, and members' reports.
//!
//! A held line is not delivered; its sender is told, and the moderators online see it with its
//! number. `/approve N` delivers it to its room as the sender's line, in the room's order at the
//! moment of approval (marked `reviewed` where a door can say so); `/deny N [reason]` drops it
//! and tells the sender; a line nobody decides on within `[moderation] hold_for` expires as
//! denied. `/report NAME [reason]` records the last lines NAME said in the room and tells the
//! moderators; `/resolve N [note]` closes a report. Everything is kept in the store (so a
//! restart keeps the queue) and audited; the moderators' web panel follows it live.
//!
//! This file keeps both lists, the held lines' handling and the paging of `/held` and
//! `/reports`; filing and resolving reports is in [`super::reports`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::persistence::{audit, not_saved};
use super::reports::Reporter;
use super::{RoomHub, Until};
use crate::event::{ClientId, Role};
use crate::hub::delivery::{Delivery, HeldView, ReportView};
use crate::names::NameKey;
use crate::store::{Change, HeldRecord, LineKind, Snapshot};

/// Who decides when nobody did.
const QUEUE_ACTOR: &str = "the moderation queue";

/// Most entries in one page of `/reports` or `/held`, or in the web panel's first view.
const PAGE_ENTRIES: usize = 20;

/// What a line of a listing may cost in a client's outbox beyond its text, whatever the door:
/// the `SERVER: ` prefix, IRC's `:chatpipe NOTICE nick :`, JSON's field names.
const LINE_OVERHEAD: usize = 64;

/// An estimate of the bytes `lines` take in a client's outbox on any door: twice the text (JSON
/// escapes at most double what the line codec lets through) and [`LINE_OVERHEAD`] a line.
fn cost(lines: &[String]) -> usize {
    lines.iter().map(|l| 2 * l.len() + LINE_OVERHEAD).sum()
}

/// Splits `entries` (each a block of lines) into pages of at most [`PAGE_ENTRIES`] entries and
/// [`cost`] `budget`. An entry too large for a page alone is cut to fit, saying how many of its
/// lines were left out; so no page costs more than `budget` (past a first line, which is always
/// kept).
fn paginate(entries: Vec<Vec<String>>, budget: usize) -> Vec<Vec<String>> {
    let mut pages: Vec<Vec<String>> = Vec::new();
    let (mut page, mut spent, mut count) = (Vec::new(), 0, 0);
    for mut entry in entries {
        if cost(&entry) > budget {
            let total = entry.len();
            let note_cost = 2 * 48 + LINE_OVERHEAD;
            let mut kept = 1;
            let mut used = cost(&entry[..1]) + note_cost;
            while kept < total && used + cost(&entry[kept..=kept]) <= budget {
                used += cost(&entry[kept..=kept]);
                kept += 1;
            }
            entry.truncate(kept);
            entry.push(format!("  ({} more lines not shown)", total - kept));
        }
        let entry_cost = cost(&entry);
        if count > 0 && (count == PAGE_ENTRIES || spent + entry_cost > budget) {
            pages.push(std::mem::take(&mut page));
            (spent, count) = (0, 0);
        }
        page.extend(entry);
        spent += entry_cost;
        count += 1;
    }
    if count > 0 {
        pages.push(page);
    }
    pages
}

/// A held line and when it was held, on the hub's clock.
struct Held {
    view: Arc<HeldView>,
    since: Instant,
}

/// What waits for the moderators.
#[derive(Default)]
pub(super) struct Queue {
    held: BTreeMap<u64, Held>,
    pub(super) reports: BTreeMap<u64, Arc<ReportView>>,
    last_held: u64,
    pub(super) last_report: u64,
    /// When each member (a [`Reporter`]) made their recent reports, for `[moderation]
    /// reports_per_hour`.
    pub(super) reported_at: std::collections::HashMap<Reporter, VecDeque<Instant>>,
    /// Who made each open report, for `[moderation] open_reports_per_member`.
    pub(super) reporters: std::collections::HashMap<u64, Reporter>,
}

impl Queue {
    /// Loads what the store kept.
    pub(super) fn restore(&mut self, snapshot: &mut Snapshot) {
        let now = (Instant::now(), SystemTime::now());
        for held in snapshot.held.drain(..) {
            let waited = now.1.duration_since(held.at).unwrap_or_default();
            let view = Arc::new(HeldView {
                id: held.id,
                room: Arc::from(held.room.as_str()),
                from: Arc::from(held.sender.as_str()),
                filter: held.filter,
                reason: String::new(),
                kind: held.kind,
                text: Arc::from(held.text.as_str()),
                at: held.at,
            });
            let since = now.0.checked_sub(waited).unwrap_or(now.0);
            self.held.insert(held.id, Held { view, since });
        }
        for report in snapshot.reports.drain(..) {
            let view = Arc::new(ReportView {
                id: report.id,
                reporter: Arc::from(report.reporter.as_str()),
                reported: Arc::from(report.reported.as_str()),
                room: Arc::from(report.room.as_str()),
                reason: report.reason,
                context: report.context,
                at: report.at,
            });
            let key = NameKey::new(&report.reporter);
            self.reporters.insert(report.id, Reporter::Name(key));
            self.reports.insert(report.id, view);
        }
        self.last_held = snapshot
            .last_ids
            .0
            .max(self.held.keys().last().copied().unwrap_or(0));
        self.last_report = snapshot
            .last_ids
            .1
            .max(self.reports.keys().last().copied().unwrap_or(0));
    }

    /// What waits, for a moderator's panel: the oldest held lines and reports that fit half of
    /// `budget` bytes each (and [`PAGE_ENTRIES`] each), and how many of each were left out.
    pub(super) fn view(&self, budget: usize) -> (Delivery, usize, usize) {
        let half = budget / 2;
        let (mut spent, mut held) = (0, Vec::new());
        for h in self.held.values().take(PAGE_ENTRIES) {
            spent += cost(&[h.view.text.to_string()]) + 4 * LINE_OVERHEAD;
            if spent > half {
                break;
            }
            held.push(h.view.clone());
        }
        let (mut spent, mut reports) = (0, Vec::new());
        for r in self.reports.values().take(PAGE_ENTRIES) {
            let head = cost(std::slice::from_ref(&r.reason)) + 4 * LINE_OVERHEAD;
            let whole = head + cost(&r.context);
            if spent + whole <= half {
                spent += whole;
                reports.push(r.clone());
                continue;
            }
            // The first report that does not fit whole goes with as much of its context as
            // fits (and a line saying `/reports` has the rest); then the view is full.
            let note = 2 * 48 + LINE_OVERHEAD;
            if spent + head + note <= half {
                let mut cut = ReportView::clone(r);
                let mut used = spent + head + note;
                let kept = cut
                    .context
                    .iter()
                    .take_while(|l| {
                        used += cost(std::slice::from_ref(*l));
                        used <= half
                    })
                    .count();
                let left = cut.context.len() - kept;
                cut.context.truncate(kept);
                cut.context
                    .push(format!("({left} more lines: /reports shows them)"));
                reports.push(Arc::new(cut));
            }
            break;
        }
        let left_out = (
            self.held.len() - held.len(),
            self.reports.len() - reports.len(),
        );
        (Delivery::Queue { held, reports }, left_out.0, left_out.1)
    }

    /// When the oldest held line expires, if any is held.
    pub(super) fn next_expiry(&self, hold_for: Duration) -> Option<Instant> {
        self.held
            .values()
            .map(|h| h.since)
            .min()
            .map(|since| since.checked_add(hold_for).unwrap_or(since))
    }

    /// Lines waiting.
    pub(super) fn length(&self) -> i64 {
        i64::try_from(self.held.len()).unwrap_or(i64::MAX)
    }
}

impl RoomHub {
    /// Sends `delivery` to every moderator and admin online.
    pub(super) fn tell_moderators(&mut self, delivery: &Delivery) {
        let moderators: Vec<ClientId> = self
            .members
            .values()
            .filter(|m| m.role() != Role::User)
            .map(|m| m.client.id())
            .collect();
        for id in moderators {
            self.deliver(id, delivery);
        }
    }

    /// A filter held a line of `id`'s in `room`.
    pub(super) fn hold(
        &mut self,
        id: ClientId,
        room: &Arc<str>,
        filter: String,
        reason: String,
        action: bool,
        text: String,
    ) {
        let Some(sender) = self.members.get(&id).map(|m| m.client.name()) else {
            return;
        };
        self.queue.last_held += 1;
        let number = self.queue.last_held;
        let view = Arc::new(HeldView {
            id: number,
            room: room.clone(),
            from: sender.clone(),
            filter,
            reason,
            kind: if action {
                LineKind::Action
            } else {
                LineKind::Chat
            },
            text: Arc::from(text),
            at: SystemTime::now(),
        });
        tracing::info!(client = %id, name = %sender, room = %room, filter = %view.filter, held = number, "line held for review");
        self.queue.held.insert(
            number,
            Held {
                view: view.clone(),
                since: Instant::now(),
            },
        );
        let metrics = &self.settings.metrics;
        metrics.queued(&view.filter, "held");
        metrics.queue_length.set(self.queue.length());
        self.deliver(
            id,
            &Delivery::coded("held", "Your message is held for review by a moderator."),
        );
        self.tell_moderators(&Delivery::Held(view.clone()));
        let record = Change::Hold(HeldRecord {
            id: number,
            at: view.at,
            room: room.to_string(),
            sender: sender.to_string(),
            filter: view.filter.clone(),
            kind: view.kind,
            text: view.text.to_string(),
        });
        self.persist(vec![record], |_, result| {
            if let Err(cause) = result {
                tracing::error!(%cause, "a held line could not be saved; it is held until a restart");
            }
        });
    }

    /// The bytes one answer to `id` may take: half its outbox's bound, so a page never makes
    /// the client look too slow to keep up.
    fn page_budget(&self, id: ClientId) -> usize {
        self.members
            .get(&id)
            .map_or(0, |m| m.outbox.byte_bound() / 2)
    }

    /// Tells `id` page `page` (from 1) of a listing: `title` with the total, the page's lines,
    /// and how to see the next page.
    pub(super) fn tell_page(
        &mut self,
        id: ClientId,
        command: &str,
        title: &str,
        total: usize,
        entries: Vec<Vec<String>>,
        page: usize,
    ) {
        let mut pages = paginate(entries, self.page_budget(id).saturating_sub(256));
        let count = pages.len();
        if page > count {
            self.tell(
                id,
                &format!("{title}: there are {count} pages; /{command} {count} is the last."),
            );
            return;
        }
        let lines = std::mem::take(&mut pages[page - 1]);
        let mut text = if count == 1 {
            format!("{title} ({total}):")
        } else {
            format!("{title} ({total}), page {page} of {count}:")
        };
        for line in lines {
            text.push('\n');
            text.push_str(&line);
        }
        if page < count {
            text.push_str(&format!("\nMore: /{command} {}", page + 1));
        }
        self.tell(id, &text);
    }

    /// `/held [PAGE]`.
    pub(super) fn list_held(&mut self, id: ClientId, page: usize) {
        if self.queue.held.is_empty() {
            self.tell(id, "No lines are waiting for review.");
            return;
        }
        let entries: Vec<Vec<String>> = self
            .queue
            .held
            .values()
            .map(|h| {
                let age = super::describe_duration(h.since.elapsed());
                let v = &h.view;
                vec![format!(
                    "#{} {} in {} ({}), {age} ago: {}",
                    v.id, v.from, v.room, v.filter, v.text
                )]
            })
            .collect();
        let total = entries.len();
        self.tell_page(id, "held", "Held lines", total, entries, page);
    }

    /// Takes held line `number` out of the queue, or tells `id` there is none.
    fn take_held(&mut self, id: ClientId, number: u64) -> Option<Held> {
        let held = self.queue.held.remove(&number);
        if held.is_none() {
            self.tell(id, &format!("No held line #{number} is waiting."));
        }
        self.settings.metrics.queue_length.set(self.queue.length());
        held
    }

    /// `/approve N`: the line goes to its room now, as its sender's.
    pub(super) fn approve(&mut self, id: ClientId, actor: &str, number: u64) {
        let Some(held) = self.take_held(id, number) else {
            return;
        };
        let v = held.view.clone();
        self.decided(&held, "approved");
        let sender = self.find(&v.from);
        self.say_in_room(
            &v.room,
            v.kind,
            v.from.clone(),
            v.text.to_string(),
            true,
            sender,
        );
        tracing::info!(held = number, by = actor, "held line approved");
        let changes = vec![
            Change::Release { id: number },
            audit(
                actor,
                &v.from,
                "approve",
                &format!("#{number} ({})", v.filter),
                Until::Lifted,
            ),
        ];
        let done = format!("Held line #{number} approved and delivered to {}.", v.room);
        self.persist_and_tell(id, changes, done);
        self.tell_moderators(&Delivery::QueueDone {
            what: "held",
            id: number,
            outcome: "approved",
            by: Arc::from(actor),
        });
    }

    /// `/deny N [reason]`: the line is dropped and its sender told.
    pub(super) fn deny(&mut self, id: ClientId, actor: &str, number: u64, reason: Option<String>) {
        let Some(held) = self.take_held(id, number) else {
            return;
        };
        let reason = reason.unwrap_or_else(|| "no reason given".to_owned());
        self.drop_held(&held, actor, "deny", "denied", &reason);
        let done = format!("Held line #{number} denied.");
        self.tell(id, &done);
    }

    /// Drops a held line as `outcome`, telling its sender if online, auditing and counting it.
    fn drop_held(
        &mut self,
        held: &Held,
        actor: &str,
        what: &str,
        outcome: &'static str,
        reason: &str,
    ) {
        let v = held.view.clone();
        self.decided(held, outcome);
        if let Some(sender) = self.find(&v.from) {
            let text = format!("Your message held for review was not approved: {reason}.");
            self.deliver(sender, &Delivery::coded("denied", &text));
        }
        tracing::info!(held = v.id, by = actor, outcome, "held line dropped");
        let changes = vec![
            Change::Release { id: v.id },
            audit(
                actor,
                &v.from,
                what,
                &format!("#{} ({}): {reason}", v.id, v.filter),
                Until::Lifted,
            ),
        ];
        self.persist(changes, move |hub, result| {
            if let Err(cause) = result {
                tracing::error!(%cause, "a decision on a held line could not be saved");
                hub.tell_moderators(&Delivery::notice(&not_saved(&cause)));
            }
        });
        self.tell_moderators(&Delivery::QueueDone {
            what: "held",
            id: v.id,
            outcome,
            by: Arc::from(actor),
        });
    }

    /// Counts a decision and how long it took.
    fn decided(&self, held: &Held, outcome: &'static str) {
        let metrics = &self.settings.metrics;
        metrics.queued(&held.view.filter, outcome);
        metrics
            .hold_decision
            .observe(held.since.elapsed().as_secs_f64());
    }

    /// Expires the held lines that have waited longer than `[moderation] hold_for`.
    pub(super) fn expire_held(&mut self) {
        let hold_for = self.settings.moderation.hold_for;
        let expired: Vec<u64> = self
            .queue
            .held
            .iter()
            .filter(|(_, h)| h.since.elapsed() >= hold_for)
            .map(|(n, _)| *n)
            .collect();
        for number in expired {
            if let Some(held) = self.queue.held.remove(&number) {
                self.settings.metrics.queue_length.set(self.queue.length());
                let reason = format!(
                    "nobody reviewed it within {}",
                    super::describe_duration(hold_for)
                );
                self.drop_held(&held, QUEUE_ACTOR, "expire", "expired", &reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry lands on exactly one page, in order; no page passes its budget or
    /// [`PAGE_ENTRIES`]; an entry too large alone is cut and says so.
    #[test]
    fn pages_keep_within_their_budget() {
        let entries: Vec<Vec<String>> = (0..100)
            .map(|n| {
                let lines = if n == 7 { 500 } else { 1 + n % 5 };
                (0..lines)
                    .map(|l| format!("#{n} line {l} {}", "x".repeat(80)))
                    .collect()
            })
            .collect();
        let budget = 8 * 1024;
        let pages = paginate(entries, budget);
        let mut firsts = Vec::new();
        for page in &pages {
            assert!(cost(page) <= budget, "{} > {budget}", cost(page));
            let starts = page.iter().filter(|l| l.contains(" line 0 ")).count();
            assert!((1..=PAGE_ENTRIES).contains(&starts));
            firsts.extend(
                page.iter()
                    .filter(|l| l.contains(" line 0 "))
                    .map(|l| l[1..l.find(' ').unwrap()].parse::<usize>().unwrap()),
            );
        }
        assert_eq!(firsts, (0..100).collect::<Vec<_>>());
        let cut = pages
            .iter()
            .flatten()
            .find(|l| l.contains("more lines not shown"));
        assert!(cut.is_some(), "the 500-line entry is cut");
    }
}
