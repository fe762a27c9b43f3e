-- Derived from schemas/archive/demand.json by `usher archive schemas`: do not edit.
CREATE EXTERNAL TABLE IF NOT EXISTS `usher_archive`.`demand` (
  `PK` string COMMENT 'ENTRY#campaignId#globalUserId, hashed (it holds the user id)',
  `SK` string COMMENT 'ENTRY',
  `campaignId` string COMMENT 'The campaign',
  `globalUserId` string COMMENT 'The fan, hashed',
  `marketId` string COMMENT 'The market entered',
  `entry` string COMMENT 'The registration fields (JSON), names masked, phone dropped',
  `email` string COMMENT 'The fan e-mail, hashed',
  `verdict` string COMMENT 'PENDING, WINNER, LOSER or WAITLIST',
  `accessCode` string COMMENT 'A winner access code: never archived',
  `drawId` string COMMENT 'The draw that gave the verdict',
  `needsReplication` boolean COMMENT 'Whether the Entry Service has yet to see the last write',
  `version` bigint COMMENT 'Grows with every write of the entry',
  `transferredFrom` string COMMENT 'The linked campaign the entry was transferred from',
  `createdAt` string COMMENT 'RFC 3339',
  `updatedAt` string COMMENT 'RFC 3339',
  `systemId` string COMMENT 'The system the record comes from (setting system_id)',
  `reference` string COMMENT 'The record reference: type, table and key (type:table:PK:SK)',
  `changeType` string COMMENT 'INSERT, MODIFY or REMOVE',
  `deleted` boolean COMMENT 'Whether the change removed the item (the record is then its old image)',
  `sequenceNumber` string COMMENT 'The stream sequence number of the change (unique per change; compaction dedupes by it)',
  `changedAt` timestamp COMMENT 'The approximate creation time of the change; dt is its UTC date'
)
COMMENT 'A fans entry in a campaign (demand-table items with SK ENTRY), as registration, replication and selection write it'
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION 's3://ARCHIVE_BUCKET/archive/demand/'
TBLPROPERTIES (
  'projection.enabled'='true',
  'projection.dt.type'='date',
  'projection.dt.format'='yyyy-MM-dd',
  'projection.dt.range'='2020-01-01,NOW',
  'storage.location.template'='s3://ARCHIVE_BUCKET/archive/demand/dt=${dt}/',
  'parquet.compression'='SNAPPY'
);
