//! Per-case outcomes and the JSON and JUnit XML reports.

use std::path::Path;
use std::time::Duration;

use crate::case::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    ExpectedFailure,
}

/// How one run (a case against one kind of guest) went.
#[derive(Debug)]
pub struct Outcome {
    /// The run's name: `CASE` for `edge`, `CASE [KIND]` for the other kinds, `CASE [KIND:PROBE]`
    /// with a probe from the command line.
    pub name: String,
    /// The case's name.
    pub case: String,
    pub kind: Kind,
    /// The guest given with `--probe` for this kind, if any.
    pub probe: Option<String>,
    pub description: String,
    pub status: Status,
    pub message: String,
    pub duration: Duration,
}

impl Outcome {
    pub fn line(&self) -> String {
        let ms = self.duration.as_millis();
        match self.status {
            Status::Pass => format!("PASS  {} ({ms} ms)", self.name),
            Status::Fail => format!(
                "FAIL  {} ({ms} ms)\n      {}",
                self.name,
                self.message.replace('\n', "\n      ")
            ),
            Status::ExpectedFailure => format!(
                "XFAIL {} ({ms} ms): {}",
                self.name,
                first_line(&self.message)
            ),
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

pub fn write_json(path: &Path, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let cases: Vec<_> = outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "name": o.name,
                "case": o.case,
                "kind": o.kind.name(),
                "probe": o.probe,
                "description": o.description,
                "status": match o.status { Status::Pass => "pass", Status::Fail => "fail", Status::ExpectedFailure => "expected_failure" },
                "message": o.message,
                "duration_ms": o.duration.as_secs_f64() * 1e3,
            })
        })
        .collect();
    std::fs::write(
        path,
        serde_json::to_string_pretty(&serde_json::json!({ "cases": cases }))?,
    )?;
    Ok(())
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

pub fn write_junit(path: &Path, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let failures = outcomes.iter().filter(|o| o.status == Status::Fail).count();
    let skipped = outcomes
        .iter()
        .filter(|o| o.status == Status::ExpectedFailure)
        .count();
    let total: f64 = outcomes.iter().map(|o| o.duration.as_secs_f64()).sum();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"edge-handler-conformance\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{total:.3}\">\n",
        outcomes.len()
    );
    for o in outcomes {
        xml.push_str(&format!(
            "  <testcase classname=\"conformance.{}\" name=\"{}\" time=\"{:.3}\">",
            o.kind,
            xml_escape(&o.name),
            o.duration.as_secs_f64()
        ));
        match o.status {
            Status::Pass => {}
            Status::Fail => xml.push_str(&format!(
                "<failure message=\"{}\">{}</failure>",
                xml_escape(first_line(&o.message)),
                xml_escape(&o.message)
            )),
            Status::ExpectedFailure => xml.push_str(&format!(
                "<skipped message=\"expected failure: {}\"/>",
                xml_escape(first_line(&o.message))
            )),
        }
        xml.push_str("</testcase>\n");
    }
    xml.push_str("</testsuite>\n");
    std::fs::write(path, xml)?;
    Ok(())
}
