# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The timeline of an open item: everything sent or done, in order."""
from trytond.model import Index, ModelSQL, ModelView, fields

from .company import CompanyConsistentMixin

EVENT_KINDS = [
    ('imported', "Imported"),
    ('step', "Step reached"),
    ('skipped', "Step skipped"),
    ('paused', "Paused"),
    ('stopped', "Stopped"),
    ('resumed', "Resumed"),
    ('sent', "Sent"),
    ('failed', "Sending failed"),
    ('payment', "Payment"),
    ('paid', "Paid"),
    ('reopened', "Reopened"),
    ('attention', "Attention"),
    ('queued', "Queued at provider"),
    ('delivered', "Delivered"),
    ('returned', "Returned"),
    ('bounced', "Bounced"),
    ('plan', "Payment plan"), ('message', "Message"), ('online', "Online payment"),
    ]


class Event(CompanyConsistentMixin, ModelSQL, ModelView):
    "Timeline Event"
    __name__ = 'payt.event'
    __string__ = "Timeline Event"
    company = fields.Many2One(
        'company.company', "Company", required=True, readonly=True)
    item = fields.Many2One(
        'payt.item', "Open Item", required=True, readonly=True,
        ondelete='CASCADE')
    date = fields.Date("Date", required=True, readonly=True)
    kind = fields.Selection(EVENT_KINDS, "Kind", required=True,
        readonly=True)
    step = fields.Many2One('payt.flow.step', "Step", readonly=True,
        ondelete='SET NULL')
    communication = fields.Many2One(
        'payt.communication', "Communication", readonly=True,
        ondelete='SET NULL')
    description = fields.Char("Description", readonly=True)
    user = fields.Function(fields.Many2One('res.user', "By"), 'get_user')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.add(Index(t, (t.item, Index.Range())))
        cls._order = [('date', 'ASC'), ('id', 'ASC')]

    def get_user(self, name):
        return self.create_uid.id if self.create_uid else None
