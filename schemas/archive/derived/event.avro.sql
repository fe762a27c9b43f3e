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
  `changedAt` bigint COMMENT 'The approximate creation time of the change; dt is its UTC date'
)
COMMENT 'An event (show) a campaign sells for (demand-table items whose PK starts with EVENT#)'
PARTITIONED BY (`dt` string)
STORED AS AVRO
LOCATION 's3://ARCHIVE_BUCKET/archive/event/'
TBLPROPERTIES (
  'projection.enabled'='true',
  'projection.dt.type'='date',
  'projection.dt.format'='yyyy-MM-dd',
  'projection.dt.range'='2020-01-01,NOW',
  'storage.location.template'='s3://ARCHIVE_BUCKET/archive/event/dt=${dt}/',
  'avro.schema.literal'='{"doc":"An event (show) a campaign sells for (demand-table items whose PK starts with EVENT#)","fields":[{"doc":"EVENT#eventId","name":"PK","type":"string"},{"doc":"EVENT","name":"SK","type":"string"},{"doc":"The event","name":"eventId","type":"string"},{"default":null,"doc":"The campaign selling it","name":"campaignId","type":["null","string"]},{"default":null,"doc":"The market it belongs to","name":"marketId","type":["null","string"]},{"default":null,"doc":"Its name","name":"name","type":["null","string"]},{"default":null,"doc":"Where","name":"venue","type":["null","string"]},{"default":null,"doc":"RFC 3339","name":"startsAt","type":["null","string"]},{"default":null,"doc":"Seats","name":"capacity","type":["null","long"]},{"default":null,"doc":"RFC 3339","name":"updatedAt","type":["null","string"]},{"doc":"The system the record comes from (setting system_id)","name":"systemId","type":"string"},{"doc":"The record reference: type, table and key (type:table:PK:SK)","name":"reference","type":"string"},{"doc":"INSERT, MODIFY or REMOVE","name":"changeType","type":"string"},{"doc":"Whether the change removed the item (the record is then its old image)","name":"deleted","type":"boolean"},{"doc":"The stream sequence number of the change (unique per change; compaction dedupes by it)","name":"sequenceNumber","type":"string"},{"doc":"The approximate creation time of the change; dt is its UTC date","name":"changedAt","type":{"logicalType":"timestamp-millis","type":"long"}}],"name":"event","namespace":"usher.archive","type":"record"}'
);
