-- Delivery attempts by callback and hour, counted as attempts are
-- recorded, so that health figures never scan the history.
CREATE TABLE hour_counts (
    callback_id text   NOT NULL,
    hour        bigint NOT NULL,
    succeeded   bigint NOT NULL,
    failed      bigint NOT NULL,
    PRIMARY KEY (callback_id, hour)
);
