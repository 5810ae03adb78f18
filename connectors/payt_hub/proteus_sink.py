"""ProteusSink: the ERP side of the Sink, over proteus.

Used by ``erp.sync_link`` (``payt-hub sync --database``, the Celery task)
and tested against a real Tryton database in tests/test_erp.py. With
embedded trytond every call below is its own committed transaction. What
it uses in the ERP (payt_dunning/hub.py):

* ``payt.administration.import_batch(administration_id, batch)`` RPC
  (classmethod, see docs/IMPORT-BATCH.md), returning the summary dict.
* model ``payt.hub.cursor`` with fields ``link`` (Many2One to the link
  model), ``stream`` (Char) and ``value`` (Char), one record per
  (link, stream).
"""
from __future__ import annotations

from .sync import Sink


class ProteusSink(Sink):
    def __init__(self, administration_id: int, link_id: int, config=None):
        from proteus import Model
        from proteus import config as pconfig
        self.config = config or pconfig.get_config()
        self.administration_id = administration_id
        self.link_id = link_id
        self.Administration = Model.get('payt.administration',
                                        config=self.config)
        self.Cursor = Model.get('payt.hub.cursor', config=self.config)

    def import_batch(self, batch):
        return self.Administration.import_batch(
            self.administration_id, batch, self.config.context)

    def _find(self, stream):
        found = self.Cursor.find([('link', '=', self.link_id),
                                  ('stream', '=', stream)], limit=1)
        return found[0] if found else None

    def load_cursor(self, stream):
        record = self._find(stream)
        return record.value if record else None

    def save_cursor(self, stream, value):
        from proteus import Model
        record = self._find(stream)
        if record is None:
            record = self.Cursor()
            Link = Model.get(self.Cursor._fields['link']['relation'],
                             config=self.config)
            record.link = Link(self.link_id)
            record.stream = stream
        record.value = value
        record.save()
