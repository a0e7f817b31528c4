//! Bulk import rules: which rows of a batch are written, skipped or refused, and the tally
//! reported back. No I/O here.
use std::collections::HashSet;

use super::{CustomerProfile, IdentifierKind, IdentifierValue};

/// Most rows one message of an import stream may carry.
pub const MAX_ROWS_PER_BATCH: usize = 5_000;
/// Most row errors reported back; the rest are only counted.
pub const MAX_REPORTED_ERRORS: usize = 1_000;
/// Reason of a row refused for a malformed field.
pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
/// Reason of a row refused because one of its identifiers belongs to someone else.
pub const ALREADY_EXISTS: &str = "ALREADY_EXISTS";

/// A row whose fields are valid, ready to be written.
#[derive(Debug, Clone)]
pub struct RowDraft {
    pub line_number: i64,
    pub profile: CustomerProfile,
    pub identifiers: Vec<IdentifierValue>,
}

/// Why one row was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line_number: i64,
    pub field: String,
    pub description: String,
    pub reason: &'static str,
}

impl RowError {
    pub fn invalid(
        line_number: i64,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        RowError {
            line_number,
            field: field.into(),
            description: description.into(),
            reason: INVALID_ARGUMENT,
        }
    }
}

/// What to do with a batch of valid rows.
#[derive(Debug, Default)]
pub struct BatchPlan {
    pub insert: Vec<RowDraft>,
    pub skipped: u64,
    pub errors: Vec<RowError>,
}

/// Checks an import id: 1..128 printable characters.
pub fn check_import_id(id: &str) -> Result<(), &'static str> {
    match id.chars().count() {
        0 => Err("is required"),
        1..=128 if !id.chars().any(char::is_control) => Ok(()),
        1..=128 => Err("must not contain control characters"),
        _ => Err("must be at most 128 characters"),
    }
}

/// Decides the fate of a batch of valid rows. A row already imported under this import id is
/// skipped; a row repeating a line number of the batch, or whose identifier is taken or
/// repeats an identifier of an earlier row of the batch, is refused whole; the rest are
/// written.
pub fn plan_batch(
    rows: Vec<RowDraft>,
    already_imported: &HashSet<i64>,
    taken: &HashSet<(IdentifierKind, String)>,
) -> BatchPlan {
    let mut plan = BatchPlan::default();
    let mut lines = HashSet::new();
    let mut claimed: HashSet<(IdentifierKind, &str)> = HashSet::new();
    let mut keep = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        if already_imported.contains(&row.line_number) {
            plan.skipped += 1;
            continue;
        }
        if !lines.insert(row.line_number) {
            plan.errors.push(RowError::invalid(
                row.line_number,
                "line_number",
                "repeats an earlier row of the import",
            ));
            continue;
        }
        let clash = row.identifiers.iter().enumerate().find_map(|(i, id)| {
            let key = (id.kind, id.value.as_str());
            if taken.contains(&(id.kind, id.value.clone())) {
                Some((i, "belongs to another customer"))
            } else if claimed.contains(&key)
                || row.identifiers[..i]
                    .iter()
                    .any(|e| e.kind == id.kind && e.value == id.value)
            {
                Some((i, "repeats an identifier of an earlier row"))
            } else {
                None
            }
        });
        match clash {
            Some((i, why)) => plan.errors.push(RowError {
                line_number: row.line_number,
                field: format!("identifiers[{i}].value"),
                description: format!(
                    "{} {:?} {why}",
                    row.identifiers[i].kind.as_str(),
                    row.identifiers[i].value
                ),
                reason: ALREADY_EXISTS,
            }),
            None => {
                claimed.extend(
                    row.identifiers
                        .iter()
                        .map(|id| (id.kind, id.value.as_str())),
                );
                keep.push(index);
            }
        }
    }
    let keep: HashSet<usize> = keep.into_iter().collect();
    plan.insert = rows
        .into_iter()
        .enumerate()
        .filter_map(|(i, row)| keep.contains(&i).then_some(row))
        .collect();
    plan
}

/// Running totals of one import call.
#[derive(Debug, Default)]
pub struct ImportTally {
    pub imported: i64,
    pub skipped: i64,
    pub failed: i64,
    pub errors: Vec<RowError>,
}

impl ImportTally {
    /// Counts one refused row with its errors, keeping the first MAX_REPORTED_ERRORS errors.
    pub fn refuse_row(&mut self, errors: impl IntoIterator<Item = RowError>) {
        self.failed += 1;
        let room = MAX_REPORTED_ERRORS.saturating_sub(self.errors.len());
        self.errors.extend(errors.into_iter().take(room));
    }

    /// The tally with its errors in line order.
    pub fn finish(mut self) -> Self {
        self.errors.sort_by_key(|e| e.line_number);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: i64, cards: &[&str]) -> RowDraft {
        RowDraft {
            line_number: line,
            profile: CustomerProfile::default(),
            identifiers: cards
                .iter()
                .map(|c| IdentifierValue::parse(IdentifierKind::Card, c).expect("card"))
                .collect(),
        }
    }

    fn lines(plan: &BatchPlan) -> Vec<i64> {
        plan.insert.iter().map(|r| r.line_number).collect()
    }

    #[test]
    fn rows_already_imported_are_skipped_not_refused() {
        let plan = plan_batch(
            vec![row(2, &["1001"]), row(3, &["1002"])],
            &HashSet::from([2]),
            &HashSet::new(),
        );
        assert_eq!(lines(&plan), vec![3]);
        assert_eq!(plan.skipped, 1);
        assert!(plan.errors.is_empty());
    }

    #[test]
    fn a_taken_card_refuses_its_whole_row_naming_the_identifier() {
        let plan = plan_batch(
            vec![row(2, &["1001", "1002"]), row(3, &["1003"])],
            &HashSet::new(),
            &HashSet::from([(IdentifierKind::Card, "1002".to_owned())]),
        );
        assert_eq!(lines(&plan), vec![3]);
        assert_eq!(plan.errors.len(), 1);
        assert_eq!(plan.errors[0].line_number, 2);
        assert_eq!(plan.errors[0].field, "identifiers[1].value");
        assert_eq!(plan.errors[0].reason, ALREADY_EXISTS);
    }

    #[test]
    fn the_first_row_claiming_a_card_wins_within_a_batch() {
        let plan = plan_batch(
            vec![
                row(2, &["1001"]),
                row(3, &["1001"]),
                row(4, &["1004", "1004"]),
            ],
            &HashSet::new(),
            &HashSet::new(),
        );
        assert_eq!(lines(&plan), vec![2]);
        assert_eq!(
            plan.errors
                .iter()
                .map(|e| e.line_number)
                .collect::<Vec<_>>(),
            vec![3, 4]
        );
    }

    #[test]
    fn a_repeated_line_number_is_refused() {
        let plan = plan_batch(
            vec![row(2, &["1001"]), row(2, &["1002"])],
            &HashSet::new(),
            &HashSet::new(),
        );
        assert_eq!(lines(&plan), vec![2]);
        assert_eq!(plan.errors[0].field, "line_number");
    }

    #[test]
    fn the_tally_keeps_a_bounded_number_of_errors_in_line_order() {
        let mut tally = ImportTally::default();
        for line in (0..(MAX_REPORTED_ERRORS as i64 + 5)).rev() {
            tally.refuse_row([RowError::invalid(line, "x", "y")]);
        }
        let tally = tally.finish();
        assert_eq!(tally.failed, MAX_REPORTED_ERRORS as i64 + 5);
        assert_eq!(tally.errors.len(), MAX_REPORTED_ERRORS);
        assert!(
            tally
                .errors
                .windows(2)
                .all(|w| w[0].line_number <= w[1].line_number)
        );
    }

    #[test]
    fn import_ids_are_bounded() {
        assert!(check_import_id("").is_err());
        assert!(check_import_id("crm-2026-11").is_ok());
        assert!(check_import_id(&"x".repeat(129)).is_err());
        assert!(check_import_id("a\nb").is_err());
    }
}
