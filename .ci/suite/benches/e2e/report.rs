//! Samples, medians and spreads, and the Markdown tables of a run.

/// The values of one measure over the runs.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median (the mean of the middle two for an even count).
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// `median (min–max)` with `digits` decimals.
    pub fn spread(&self, digits: usize) -> String {
        let v = self.sorted();
        match v.len() {
            0 => "—".into(),
            1 => format!("{:.digits$}", v[0]),
            _ => format!(
                "{:.digits$} ({:.digits$}–{:.digits$})",
                self.median(),
                v[0],
                v[v.len() - 1]
            ),
        }
    }
}

/// A ratio `a / b`, printed as `1.23×`.
pub fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "—".into()
    }
}

/// Whether a target is met, for the tables.
pub fn mark(met: bool) -> &'static str {
    if met { "✓" } else { "✗" }
}

/// One table of the report.
#[derive(Debug, Clone)]
pub struct Table {
    pub title: String,
    pub note: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>, header: &[&str]) -> Table {
        Table {
            title: title.into(),
            note: String::new(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("### {}\n\n", self.title);
        if !self.note.is_empty() {
            s.push_str(&self.note);
            s.push_str("\n\n");
        }
        s.push_str(&format!("| {} |\n", self.header.join(" | ")));
        s.push_str(&format!(
            "|{}\n",
            self.header.iter().map(|_| " --- |").collect::<String>()
        ));
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        s
    }
}

/// Everything a run measured.
#[derive(Debug, Default)]
pub struct Report {
    pub preamble: String,
    pub tables: Vec<Table>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut s = self.preamble.clone();
        for t in &self.tables {
            s.push('\n');
            s.push_str(&t.markdown());
        }
        s
    }
}
