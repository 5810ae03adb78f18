"""ProteusSink: the ERP side of the Sink, over proteus.

Used by ``erp.sync_link`` (``payt-hub sync --database``, the Celery task)
and tested against a real Tryton database in tests/test_erp.py. With
embedded trytond every call below is its own committed transaction. What
it uses in the ERP (payt_dunning/hub.py, all for users of the group
"Debtor Management Connector Hub"):

* ``payt.hub.link.import_page(link_id, batch, cursors)``: the batch into
  ``payt.administration.import_batch`` (docs/IMPORT-BATCH.md) and the
  cursors ({stream: value}) into ``payt.hub.cursor``, one transaction;
* ``payt.hub.link.erp_state(link_id)``: the administration's open items
  ({external id: [open amount, currency]}) and debtor ids;
* model ``payt.hub.cursor`` (``link``, ``stream``, ``value``) to read the
  cursors.
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
        self.Link = Model.get('payt.hub.link', config=self.config)
        self.Cursor = Model.get('payt.hub.cursor', config=self.config)
        self._state = None

    def import_batch(self, batch, cursors=None):
        self._state = None
        return self.Link.import_page(self.link_id, batch, cursors or {},
                                     self.config.context)

    def load_cursor(self, stream):
        found = self.Cursor.find([('link', '=', self.link_id),
                                  ('stream', '=', stream)], limit=1)
        return found[0].value if found else None

    def _erp_state(self):
        if self._state is None:
            self._state = self.Link.erp_state(self.link_id,
                                              self.config.context)
        return self._state

    def open_state(self):
        return {k: tuple(v) for k, v in self._erp_state()['open'].items()}

    def debtor_ids(self):
        return set(self._erp_state()['debtors'])

    def open_records(self):
        return self._erp_state()['items']

    def payment_amounts(self):
        return self._erp_state()['payments']

    def record_evidence(self, source):
        return self.Link.record_evidence(self.link_id, source,
                                         self.config.context)
