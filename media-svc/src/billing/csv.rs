//! Bills as CSV (RFC 4180): CRLF line ends; a field holding a comma, a double quote, CR or LF is
//! quoted, its quotes doubled. A header row, a row per line of each bill and a total row per
//! bill. No cell starts with `=`, `+`, `-` or `@` from data: package names start with a letter or
//! digit, currencies are capital letters, and the numbers are never negative.

use mesh::api::media::{BillingUnit, MonthlyBill};

use super::{Currency, unit_label};

/// The header row's fields.
const HEADER: [&str; 11] = [
    "customer_id",
    "month",
    "package",
    "rate_card_version",
    "currency",
    "unit",
    "quantity",
    "unit_price_minor",
    "amount_micros",
    "amount_minor",
    "amount",
];

/// One field, quoted when it must be.
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn row(out: &mut String, fields: &[String]) {
    let line: Vec<String> = fields.iter().map(|f| field(f)).collect();
    out.push_str(&line.join(","));
    out.push_str("\r\n");
}

/// The CSV of bills (one tenant's, or every tenant's of a month).
pub fn bills(bills: &[MonthlyBill]) -> String {
    let mut out = String::new();
    row(
        &mut out,
        &HEADER.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
    );
    for b in bills {
        let currency = Currency::parse(&b.currency).ok();
        let money = |minor: i64| {
            currency
                .as_ref()
                .map_or_else(|| minor.to_string(), |c| c.format(minor))
        };
        let head = [
            b.customer_id.to_string(),
            b.month.clone(),
            b.package.clone(),
            b.rate_card_version.to_string(),
            b.currency.clone(),
        ];
        for l in &b.lines {
            let unit = BillingUnit::try_from(l.unit).unwrap_or(BillingUnit::Unspecified);
            let mut fields = head.to_vec();
            fields.extend([
                unit_label(unit).to_owned(),
                l.quantity.to_string(),
                l.unit_price.to_string(),
                l.amount_micros.to_string(),
                l.amount.to_string(),
                money(l.amount),
            ]);
            row(&mut out, &fields);
        }
        let mut fields = head.to_vec();
        fields.extend([
            "total".to_owned(),
            String::new(),
            String::new(),
            String::new(),
            b.total.to_string(),
            money(b.total),
        ]);
        row(&mut out, &fields);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh::api::media::BillLine;

    #[test]
    fn fields_are_quoted_only_when_they_must_be() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\r\nlines"), "\"two\r\nlines\"");
    }

    #[test]
    fn a_bill_is_a_header_its_lines_and_a_total() {
        let bill = MonthlyBill {
            customer_id: 7,
            month: "2026-12".into(),
            package: "starter".into(),
            rate_card_version: 2,
            currency: "USD".into(),
            lines: vec![BillLine {
                unit: BillingUnit::TwilioMinutes as i32,
                quantity: 61,
                unit_price: 2,
                amount_micros: 122_000_000,
                amount: 122,
            }],
            total: 122,
            ..Default::default()
        };
        let csv = bills(&[bill]);
        let rows: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            rows[0],
            "customer_id,month,package,rate_card_version,currency,unit,quantity,unit_price_minor,amount_micros,amount_minor,amount"
        );
        assert_eq!(
            rows[1],
            "7,2026-12,starter,2,USD,twilio_minutes,61,2,122000000,122,1.22"
        );
        assert_eq!(rows[2], "7,2026-12,starter,2,USD,total,,,,122,1.22");
        assert_eq!(rows[3], "", "ends with CRLF");
    }
}
