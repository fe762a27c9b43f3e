//! The data pipeline's messages and analytics records
//! (`data-pipeline/process-data`, `data-pipeline/send-data`, and the
//! workers that feed `data-queue`: `services/campaign-service` and
//! `registration/submit-entry`).
//!
//! **`data-queue` message** ([`DataMessage`]): `{"type": <DataType>, "data": {…}}`,
//! the `data` of each type:
//!
//! | type                | `data`                                                                                     |
//! |---------------------|--------------------------------------------------------------------------------------------|
//! | `CAMPAIGN`          | a campaign as the Campaign Service stores it ([`crate::campaign::Campaign`])                 |
//! | `MARKET`            | a market as the Campaign Service stores it ([`crate::campaign::Market`])                     |
//! | `EVENT_MAPPING`     | [`EventMappingData`] `{"campaignId","marketId","eventId","eventName"?,"venue"?}`             |
//! | `REGISTRATION`      | [`RegistrationData`] `{"campaignId","globalUserId","marketId","version","createdAt","updatedAt","country"?,"locale"?,"transferredFrom"?}` |
//! | `REGISTERED_MARKET` | [`RegisteredMarketData`] `{"campaignId","marketId","globalUserId","registeredAt"}`           |
//!
//! **Analytics records** ([`format`]): what `process-data` publishes to the
//! `data-sns` topic (body: the record as JSON; message attribute `type`) and
//! what `send-data` validates against `components/data-pipeline/schemas/<schema>.json`
//! and produces to Kafka (`prd2011.dmnd.<topic suffix>`, key [`AnalyticsRecord::key`]):
//!
//! * [`CampaignRecord`] `{"campaignId","slug","name","status","opensAt","closesAt","gateType","countries","linkedCampaignId","fieldNames"}`
//! * [`MarketRecord`] `{"campaignId","marketId","eventId","eventName","venue","selectionCount","waitlistCount"}`
//! * [`EventMappingRecord`] `{"campaignId","marketId","eventId","eventName","venue"}`
//! * [`RegistrationRecord`] `{"campaignId","globalUserId","marketId","version","createdAt","updatedAt","country","locale","transferredFrom"}`
//! * [`RegisteredMarketRecord`] `{"campaignId","marketId","globalUserId","registeredAt"}`
//!
//! Every field is always present (absent optional values are `null`), times
//! are RFC 3339 UTC, and no record carries an e-mail address or a name (the
//! analytics topics are not for personal data beyond the fan's id and
//! country). A record is a pure function of its `data`, so a redelivered
//! message formats to the same record with the same key.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::campaign::{Campaign, Gate, Market};
use crate::rfc3339;

/// The `type` of a `data-queue` message and the `type` attribute of a
/// `data-sns` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DataType {
    /// A campaign was created or changed.
    Campaign,
    /// A market was created or changed.
    Market,
    /// A fan's entry was registered (or registered again).
    Registration,
    /// A market's event mapping (market → event).
    EventMapping,
    /// A fan registered for a market.
    RegisteredMarket,
}

impl DataType {
    /// Every type, in a fixed order.
    pub const ALL: [DataType; 5] = [
        DataType::Campaign,
        DataType::Market,
        DataType::Registration,
        DataType::EventMapping,
        DataType::RegisteredMarket,
    ];

    /// The wire name (`CAMPAIGN` …).
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Campaign => "CAMPAIGN",
            DataType::Market => "MARKET",
            DataType::Registration => "REGISTRATION",
            DataType::EventMapping => "EVENT_MAPPING",
            DataType::RegisteredMarket => "REGISTERED_MARKET",
        }
    }

    /// The type of a wire name, if it is one.
    pub fn parse(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The name of the type's JSON Schema file (without `.json`) and of
    /// the Kafka topic after `prd2011.dmnd.`: `campaigns`, `markets`,
    /// `registrations`, `event-mappings`, `registered-markets`.
    pub fn plural(self) -> &'static str {
        match self {
            DataType::Campaign => "campaigns",
            DataType::Market => "markets",
            DataType::Registration => "registrations",
            DataType::EventMapping => "event-mappings",
            DataType::RegisteredMarket => "registered-markets",
        }
    }

    /// The default Kafka topic of the type (`prd2011.dmnd.<plural>`).
    pub fn default_topic(self) -> String {
        format!("prd2011.dmnd.{}", self.plural())
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message of `data-queue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataMessage {
    /// What `data` is.
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// The changed thing.
    pub data: Value,
}

impl DataMessage {
    /// A message of this type whose `data` is `value` as JSON.
    pub fn new<T: Serialize>(data_type: DataType, value: &T) -> Result<DataMessage, FormatError> {
        Ok(DataMessage {
            data_type,
            data: serde_json::to_value(value).map_err(|e| FormatError::Data(e.to_string()))?,
        })
    }
}

/// The `data` of an `EVENT_MAPPING` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMappingData {
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
    /// The event the market sells.
    pub event_id: String,
    /// The event's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    /// The venue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue: Option<String>,
}

impl EventMappingData {
    /// The event mapping of a market.
    pub fn of_market(market: &Market) -> EventMappingData {
        EventMappingData {
            campaign_id: market.campaign_id.clone(),
            market_id: market.id.clone(),
            event_id: market.event_id.clone(),
            event_name: Some(market.event_name.clone()).filter(|s| !s.is_empty()),
            venue: Some(market.venue.clone()).filter(|s| !s.is_empty()),
        }
    }
}

/// The `data` of a `REGISTRATION` message: a fan's entry as
/// `registration/submit-entry` wrote it (no entry fields, no e-mail).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationData {
    /// The campaign.
    pub campaign_id: String,
    /// The fan.
    pub global_user_id: String,
    /// The market registered for.
    pub market_id: String,
    /// The entry's version (1 for a new entry).
    pub version: u64,
    /// When the entry was first written (RFC 3339).
    pub created_at: String,
    /// When it was last written (RFC 3339).
    pub updated_at: String,
    /// The fan's country (ISO 3166-1 alpha-2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The fan's locale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// The campaign the entry was transferred from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transferred_from: Option<String>,
}

/// The `data` of a `REGISTERED_MARKET` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredMarketData {
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
    /// The fan.
    pub global_user_id: String,
    /// When the fan registered for it (RFC 3339).
    pub registered_at: String,
}

/// The analytics record of a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CampaignRecord {
    /// The campaign.
    pub campaign_id: String,
    /// Its slug.
    pub slug: String,
    /// Its display name.
    pub name: String,
    /// `DRAFT`, `OPEN` or `CLOSED`.
    pub status: String,
    /// Registrations open (RFC 3339).
    pub opens_at: String,
    /// Registrations close (RFC 3339).
    pub closes_at: String,
    /// `none`, `invite-only` or `countries`.
    pub gate_type: String,
    /// The allowed countries of a `countries` gate (empty otherwise).
    pub countries: Vec<String>,
    /// The linked campaign, if any.
    pub linked_campaign_id: Option<String>,
    /// The names of the entry's fields.
    pub field_names: Vec<String>,
}

/// The analytics record of a market.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarketRecord {
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
    /// Its event.
    pub event_id: String,
    /// The event's display name.
    pub event_name: String,
    /// The venue.
    pub venue: String,
    /// Winners to draw.
    pub selection_count: u64,
    /// Fans to waitlist.
    pub waitlist_count: u64,
}

/// The analytics record of an event mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventMappingRecord {
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
    /// The event.
    pub event_id: String,
    /// The event's display name, if known.
    pub event_name: Option<String>,
    /// The venue, if known.
    pub venue: Option<String>,
}

/// The analytics record of a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrationRecord {
    /// The campaign.
    pub campaign_id: String,
    /// The fan.
    pub global_user_id: String,
    /// The market.
    pub market_id: String,
    /// The entry's version.
    pub version: u64,
    /// First written (RFC 3339).
    pub created_at: String,
    /// Last written (RFC 3339).
    pub updated_at: String,
    /// The fan's country, if known.
    pub country: Option<String>,
    /// The fan's locale, if known.
    pub locale: Option<String>,
    /// The campaign the entry came from, if transferred.
    pub transferred_from: Option<String>,
}

/// The analytics record of a fan's registration for a market.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisteredMarketRecord {
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
    /// The fan.
    pub global_user_id: String,
    /// When (RFC 3339).
    pub registered_at: String,
}

/// One formatted analytics record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnalyticsRecord {
    /// `CAMPAIGN`.
    Campaign(CampaignRecord),
    /// `MARKET`.
    Market(MarketRecord),
    /// `EVENT_MAPPING`.
    EventMapping(EventMappingRecord),
    /// `REGISTRATION`.
    Registration(RegistrationRecord),
    /// `REGISTERED_MARKET`.
    RegisteredMarket(RegisteredMarketRecord),
}

impl AnalyticsRecord {
    /// The record's type.
    pub fn data_type(&self) -> DataType {
        match self {
            AnalyticsRecord::Campaign(_) => DataType::Campaign,
            AnalyticsRecord::Market(_) => DataType::Market,
            AnalyticsRecord::EventMapping(_) => DataType::EventMapping,
            AnalyticsRecord::Registration(_) => DataType::Registration,
            AnalyticsRecord::RegisteredMarket(_) => DataType::RegisteredMarket,
        }
    }

    /// The record as JSON.
    pub fn to_json(&self) -> Value {
        let value = match self {
            AnalyticsRecord::Campaign(r) => serde_json::to_value(r),
            AnalyticsRecord::Market(r) => serde_json::to_value(r),
            AnalyticsRecord::EventMapping(r) => serde_json::to_value(r),
            AnalyticsRecord::Registration(r) => serde_json::to_value(r),
            AnalyticsRecord::RegisteredMarket(r) => serde_json::to_value(r),
        };
        // Plain structs of strings, numbers and lists always serialize.
        value.unwrap_or(Value::Null)
    }

    /// The Kafka key of the record (see [`record_key`]).
    pub fn key(&self) -> String {
        record_key(self.data_type(), &self.to_json()).unwrap_or_default()
    }
}

/// The record fields that make a record's Kafka key, joined with `/`:
/// `CAMPAIGN` campaignId; `MARKET` and `EVENT_MAPPING` campaignId/marketId;
/// `REGISTRATION` campaignId/globalUserId; `REGISTERED_MARKET`
/// campaignId/marketId/globalUserId. One thing's records share a key, so
/// they keep their order in one partition.
pub fn key_fields(data_type: DataType) -> &'static [&'static str] {
    match data_type {
        DataType::Campaign => &["campaignId"],
        DataType::Market | DataType::EventMapping => &["campaignId", "marketId"],
        DataType::Registration => &["campaignId", "globalUserId"],
        DataType::RegisteredMarket => &["campaignId", "marketId", "globalUserId"],
    }
}

/// The Kafka key of a record given as JSON; `None` when one of its
/// [`key_fields`] is missing or not a non-empty string.
pub fn record_key(data_type: DataType, record: &Value) -> Option<String> {
    let mut parts = Vec::new();
    for field in key_fields(data_type) {
        match record.get(*field).and_then(Value::as_str) {
            Some(s) if !s.is_empty() => parts.push(s),
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

/// Why a `data-queue` message cannot be formatted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The body is not JSON, or not `{type, data}`.
    #[error("the body is not a {{\"type\",\"data\"}} message: {0}")]
    Body(String),
    /// `type` is not one of the five types.
    #[error("unknown type `{0}` (expected CAMPAIGN, MARKET, REGISTRATION, EVENT_MAPPING or REGISTERED_MARKET)")]
    UnknownType(String),
    /// `data` does not have the shape of its type.
    #[error("{0}")]
    Data(String),
}

/// Reads a `data-queue` message body and formats its record.
pub fn format_body(body: &str) -> Result<AnalyticsRecord, FormatError> {
    let value: Value = serde_json::from_str(body).map_err(|e| FormatError::Body(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| FormatError::Body("not a JSON object".into()))?;
    let type_name = match obj.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(FormatError::UnknownType(other.to_string())),
        None => return Err(FormatError::Body("`type` is missing".into())),
    };
    let data_type =
        DataType::parse(type_name).ok_or_else(|| FormatError::UnknownType(type_name.into()))?;
    let data = obj
        .get("data")
        .ok_or_else(|| FormatError::Body("`data` is missing".into()))?;
    format(data_type, data)
}

fn parse<T: serde::de::DeserializeOwned>(
    data_type: DataType,
    data: &Value,
) -> Result<T, FormatError> {
    serde_json::from_value(data.clone())
        .map_err(|e| FormatError::Data(format!("{data_type} data: {e}")))
}

fn non_empty(data_type: DataType, field: &str, value: &str) -> Result<(), FormatError> {
    if value.trim().is_empty() {
        Err(FormatError::Data(format!(
            "{data_type} data: `{field}` is empty"
        )))
    } else {
        Ok(())
    }
}

fn time(data_type: DataType, field: &str, value: &str) -> Result<String, FormatError> {
    match rfc3339::parse_millis(value) {
        Some(ms) => Ok(rfc3339::format_millis(ms)),
        None => Err(FormatError::Data(format!(
            "{data_type} data: `{field}` is not an RFC 3339 time: `{value}`"
        ))),
    }
}

/// Formats the `data` of a message of type `data_type` into its analytics
/// record, checking what the record needs (ids not empty, times RFC 3339).
pub fn format(data_type: DataType, data: &Value) -> Result<AnalyticsRecord, FormatError> {
    let t = data_type;
    Ok(match data_type {
        DataType::Campaign => {
            let c: Campaign = parse(t, data)?;
            non_empty(t, "id", &c.id)?;
            non_empty(t, "slug", &c.slug)?;
            let (gate_type, countries) = match &c.gate {
                Gate::None => ("none", Vec::new()),
                Gate::InviteOnly => ("invite-only", Vec::new()),
                Gate::Countries { countries } => ("countries", countries.clone()),
            };
            let status = serde_json::to_value(c.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            AnalyticsRecord::Campaign(CampaignRecord {
                opens_at: time(t, "opensAt", &c.opens_at)?,
                closes_at: time(t, "closesAt", &c.closes_at)?,
                campaign_id: c.id,
                slug: c.slug,
                name: c.name,
                status,
                gate_type: gate_type.into(),
                countries,
                linked_campaign_id: c.linked_campaign_id,
                field_names: c.fields.into_iter().map(|f| f.name).collect(),
            })
        }
        DataType::Market => {
            let m: Market = parse(t, data)?;
            non_empty(t, "id", &m.id)?;
            non_empty(t, "campaignId", &m.campaign_id)?;
            non_empty(t, "eventId", &m.event_id)?;
            AnalyticsRecord::Market(MarketRecord {
                campaign_id: m.campaign_id,
                market_id: m.id,
                event_id: m.event_id,
                event_name: m.event_name,
                venue: m.venue,
                selection_count: m.selection_count,
                waitlist_count: m.waitlist_count,
            })
        }
        DataType::EventMapping => {
            let e: EventMappingData = parse(t, data)?;
            non_empty(t, "campaignId", &e.campaign_id)?;
            non_empty(t, "marketId", &e.market_id)?;
            non_empty(t, "eventId", &e.event_id)?;
            AnalyticsRecord::EventMapping(EventMappingRecord {
                campaign_id: e.campaign_id,
                market_id: e.market_id,
                event_id: e.event_id,
                event_name: e.event_name,
                venue: e.venue,
            })
        }
        DataType::Registration => {
            let r: RegistrationData = parse(t, data)?;
            non_empty(t, "campaignId", &r.campaign_id)?;
            non_empty(t, "globalUserId", &r.global_user_id)?;
            non_empty(t, "marketId", &r.market_id)?;
            if r.version == 0 {
                return Err(FormatError::Data(format!(
                    "{t} data: `version` must be at least 1"
                )));
            }
            AnalyticsRecord::Registration(RegistrationRecord {
                created_at: time(t, "createdAt", &r.created_at)?,
                updated_at: time(t, "updatedAt", &r.updated_at)?,
                campaign_id: r.campaign_id,
                global_user_id: r.global_user_id,
                market_id: r.market_id,
                version: r.version,
                country: r.country,
                locale: r.locale,
                transferred_from: r.transferred_from,
            })
        }
        DataType::RegisteredMarket => {
            let r: RegisteredMarketData = parse(t, data)?;
            non_empty(t, "campaignId", &r.campaign_id)?;
            non_empty(t, "marketId", &r.market_id)?;
            non_empty(t, "globalUserId", &r.global_user_id)?;
            AnalyticsRecord::RegisteredMarket(RegisteredMarketRecord {
                registered_at: time(t, "registeredAt", &r.registered_at)?,
                campaign_id: r.campaign_id,
                market_id: r.market_id,
                global_user_id: r.global_user_id,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn campaign() -> Value {
        json!({"id": "c1", "slug": "tour", "name": "Tour", "status": "OPEN",
               "opensAt": "2026-12-01T10:00:00Z", "closesAt": "2026-12-10T10:00:00Z",
               "gate": {"type": "countries", "countries": ["US", "CA"]},
               "fields": [{"name": "zip", "type": "string"}], "extra": 1})
    }

    #[test]
    fn a_campaign_formats_to_its_record_with_its_key() {
        let r = format_body(&json!({"type": "CAMPAIGN", "data": campaign()}).to_string())
            .expect("formats");
        assert_eq!(r.data_type(), DataType::Campaign);
        assert_eq!(r.key(), "c1");
        assert_eq!(
            r.to_json(),
            json!({"campaignId": "c1", "slug": "tour", "name": "Tour", "status": "OPEN",
                   "opensAt": "2026-12-01T10:00:00.000Z", "closesAt": "2026-12-10T10:00:00.000Z",
                   "gateType": "countries", "countries": ["US", "CA"],
                   "linkedCampaignId": null, "fieldNames": ["zip"]})
        );
    }

    #[test]
    fn a_market_and_its_event_mapping() {
        let data = json!({"id": "m1", "campaignId": "c1", "eventId": "e1", "eventName": "Night",
                          "venue": "Arena", "selectionCount": 10});
        let m = format(DataType::Market, &data).expect("market");
        assert_eq!(m.key(), "c1/m1");
        assert_eq!(m.to_json()["waitlistCount"], 0);
        let market: Market = serde_json::from_value(data).expect("market");
        let e = format(
            DataType::EventMapping,
            &serde_json::to_value(EventMappingData::of_market(&market)).expect("json"),
        )
        .expect("mapping");
        assert_eq!(
            e.to_json(),
            json!({"campaignId": "c1", "marketId": "m1", "eventId": "e1", "eventName": "Night", "venue": "Arena"})
        );
    }

    #[test]
    fn registrations_and_registered_markets() {
        let r = format(
            DataType::Registration,
            &json!({"campaignId": "c1", "globalUserId": "u1", "marketId": "m1", "version": 2,
                    "createdAt": "2026-12-01T10:00:00Z", "updatedAt": "2026-12-01T11:00:00.5Z",
                    "country": "US"}),
        )
        .expect("registration");
        assert_eq!(r.key(), "c1/u1");
        assert_eq!(r.to_json()["updatedAt"], "2026-12-01T11:00:00.500Z");
        assert_eq!(r.to_json()["locale"], Value::Null);
        let rm = format(
            DataType::RegisteredMarket,
            &json!({"campaignId": "c1", "marketId": "m1", "globalUserId": "u1",
                    "registeredAt": "2026-12-01T10:00:00Z"}),
        )
        .expect("registered market");
        assert_eq!(rm.key(), "c1/m1/u1");
    }

    #[test]
    fn bad_messages_say_why() {
        let cases = [
            ("{{", "not a {\"type\",\"data\"} message"),
            ("[1]", "not a JSON object"),
            (r#"{"data":{}}"#, "`type` is missing"),
            (r#"{"type":"ORDER","data":{}}"#, "unknown type `ORDER`"),
            (r#"{"type":7,"data":{}}"#, "unknown type `7`"),
            (r#"{"type":"MARKET"}"#, "`data` is missing"),
            (
                r#"{"type":"MARKET","data":{"id":"m"}}"#,
                "MARKET data: missing field",
            ),
            (
                r#"{"type":"MARKET","data":{"id":"","campaignId":"c","eventId":"e","selectionCount":1}}"#,
                "`id` is empty",
            ),
            (
                r#"{"type":"REGISTERED_MARKET","data":{"campaignId":"c","marketId":"m","globalUserId":"u","registeredAt":"yesterday"}}"#,
                "`registeredAt` is not an RFC 3339 time",
            ),
            (
                r#"{"type":"REGISTRATION","data":{"campaignId":"c","globalUserId":"u","marketId":"m","version":0,"createdAt":"2026-12-01T10:00:00Z","updatedAt":"2026-12-01T10:00:00Z"}}"#,
                "`version` must be at least 1",
            ),
        ];
        for (body, expected) in cases {
            let e = format_body(body).expect_err(body).to_string();
            assert!(e.contains(expected), "{body}: {e}");
        }
    }

    #[test]
    fn types_round_trip_their_names_and_topics() {
        for t in DataType::ALL {
            assert_eq!(DataType::parse(t.as_str()), Some(t));
            let json = serde_json::to_value(t).expect("json");
            assert_eq!(json, t.as_str());
        }
        assert_eq!(
            DataType::EventMapping.default_topic(),
            "prd2011.dmnd.event-mappings"
        );
        assert_eq!(DataType::parse("campaign"), None);
        assert_eq!(
            record_key(DataType::Market, &json!({"campaignId": "c"})),
            None
        );
    }
}
