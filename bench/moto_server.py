"""The benchmark's moto server: `python3 -m moto.server`, with one change.

moto answers a DynamoDB `Query` on a table's key by sorting every item of the table and keeping
the partition's (moto 5.x `Table.query` calls `all_items()`): 2.9 s per call on a 100,000-item
manifest, measured on moto 5.2.1, where DynamoDB reads one partition. A coordinator pass makes
one such `Query` per new key (to tell a changed file from a new one), so case 6 would measure
that sort, a thousand times. Here a `Query` on the table's key reads that partition's items only,
and a `Query` on an index starts from the items whose index hash key matches (found in one
unsorted pass, as moto keeps no index structure) instead of the whole table sorted; what either
returns is unchanged. And an SQS send does not count the queue's messages (see below). Nothing
else is touched: scans, batch reads, S3 and the rest of SQS are moto's own.

    python3 bench/moto_server.py -H 127.0.0.1 -p 5100
"""

import sys
import threading

from moto.dynamodb.models.table import Table
from moto.server import main
from moto.sqs.models import Queue, SQSBackend

_local = threading.local()
_all_items = Table.all_items
_query = Table.query


def _partition_or_all_items(self):
    partition = getattr(_local, "partition", None)
    if partition is not None and partition[0] is self:
        return partition[1]
    return _all_items(self)


def _every_item(table):
    for partition in table.items.values():
        if table.range_key_attr:
            yield from partition.values()
        else:
            yield partition


def _has(item, attr, value):
    v = item.attrs.get(attr)
    return v is not None and v == value


def _partition_query(self, hash_key, *args, **kwargs):
    # Positional order of moto's call: range_comparison, range_objs, limit, exclusive_start_key,
    # scan_index_forward, projection_expressions, index_name, ...
    index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
    if hash_key is None:
        return _query(self, hash_key, *args, **kwargs)
    if index_name is not None:
        # An index's partition: the items whose index hash key has the value (moto keeps no
        # index structure, so they are found in one pass, unsorted; moto sorts what matches).
        index = next((i for i in self.all_indexes() if i.name == index_name), None)
        if index is None:
            return _query(self, hash_key, *args, **kwargs)
        attr = next(k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH")
        items = [item for item in _every_item(self) if _has(item, attr, hash_key)]
    elif self.range_key_attr:
        items = list(self.items.get(hash_key, {}).values())
    else:
        items = [self.items[hash_key]] if hash_key in self.items else []
    _local.partition = (self, items)
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        _local.partition = None


Table.all_items = _partition_or_all_items
Table.query = _partition_query


# SQS: moto's `send_message` reads the queue's attributes to learn whether content-based
# deduplication is on, and building them counts every message of the queue (visible, delayed,
# in flight). So each message sent costs time proportional to the queue's depth: a
# `SendMessageBatch` of 10 takes 21 ms into an empty queue and 368 ms into one of 990 messages
# (measured on moto 5.2.1), where SQS's cost does not depend on depth. While a message is being
# sent, those three counts (which the send discards) are not computed; `GetQueueAttributes` and
# everything else still count.
_sending = threading.local()
_send_message = SQSBackend.send_message


def _send_without_counting(self, *args, **kwargs):
    _sending.active = True
    try:
        return _send_message(self, *args, **kwargs)
    finally:
        _sending.active = False


def _uncounted_while_sending(prop):
    def get(self):
        if getattr(_sending, "active", False):
            return 0
        return prop.fget(self)

    return property(get)


SQSBackend.send_message = _send_without_counting
for _name in (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
):
    setattr(Queue, _name, _uncounted_while_sending(getattr(Queue, _name)))

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
