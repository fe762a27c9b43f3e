-- Derived from schemas/archive/event.json by `usher archive schemas`: do not edit.
CREATE EXTERNAL TABLE IF NOT EXISTS `usher_archive`.`event` (
  `PK` string COMMENT 'EVENT#eventId',
  `SK` string COMMENT 'EVENT',
  `eventId` string COMMENT 'The event',
  `campaignId` string COMMENT 'The campaign selling it',
  `marketId` string COMMENT 'The market it belongs to',
  `name` string COMMENT 'Its name',
  `venue` string COMMENT 'Where',
  `startsAt` string COMMENT 'RFC 3339',
  `capacity` bigint COMMENT 'Seats',
  `updatedAt` string COMMENT 'RFC 3339',
  `systemId` string COMMENT 'The system the record comes from (setting system_id)',
  `reference` string COMMENT 'The record reference: type, table and key (type:table:PK:SK)',
  `changeType` string COMMENT 'INSERT, MODIFY or REMOVE',
  `deleted` boolean COMMENT 'Whether the change removed the item (the record is then its old image)',
  `sequenceNumber` string COMMENT 'The stream sequence number of the change (unique per change; compaction dedupes by it)',
  `changedAt` timestamp COMMENT 'The approximate creation time of the change; dt is its UTC date'
)
COMMENT 'An event (show) a campaign sells for (demand-table items whose PK starts with EVENT#)'
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION 's3://ARCHIVE_BUCKET/archive/event/'
TBLPROPERTIES (
  'projection.enabled'='true',
  'projection.dt.type'='date',
  'projection.dt.format'='yyyy-MM-dd',
  'projection.dt.range'='2020-01-01,NOW',
  'storage.location.template'='s3://ARCHIVE_BUCKET/archive/event/dt=${dt}/',
  'parquet.compression'='SNAPPY'
);
