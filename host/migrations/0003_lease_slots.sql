-- A lease may belong to a slot: up to a few deliveries of one callback,
-- attempted one after another by the owner. A callback's limit counts
-- slots with a live lease, not rows. Nodes of earlier versions leave this
-- column as they find it: their leases count one each, unless they take
-- over a delivery whose slotted lease ended unfinished.
ALTER TABLE deliveries ADD COLUMN lease_slot bigint;
CREATE SEQUENCE lease_slots;
