# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The daily run: move every open, unpaused item to the latest step it is
due for, record skipped steps, and create each step's communications
exactly once.

The run is set-based: a handful of SQL statements per flow step inside the
ORM's transaction, whatever the number of items. The ORM is kept for the few
records (administration, flow, pauses) and for access checks.
"""
import datetime
import json
import logging
from collections import OrderedDict
from decimal import Decimal

from sql import Null
from sql.aggregate import Sum
from sql.conditionals import Case
from sql.functions import CurrentTimestamp

from trytond.i18n import gettext
from trytond.exceptions import UserError
from trytond.model import ModelSQL, ModelView, fields
from trytond.pool import Pool, PoolMeta
from trytond.transaction import Transaction
from trytond.wizard import Button, StateTransition, StateView, Wizard

from .bulk import (
    const, do_nothing_on_conflict, invalidate_caches, random_key)
from .company import CompanyConsistentMixin
from .timeline import event_params
from .webhook_event import emit_step_performed, performed_items

logger = logging.getLogger(__name__)


class DailyRun:
    "One administration's run for one date."

    def __init__(self, administration, date):
        self.administration = administration
        self.date = date
        self.flow = administration.flow
        self.steps = self.flow.steps_in_order() if self.flow else []
        pool = Pool()
        self.item = pool.get('payt.item').__table__()
        self.pause = pool.get('payt.pause').__table__()
        self.event = pool.get('payt.event').__table__()
        self.communication = pool.get('payt.communication').__table__()
        self.attention = pool.get('payt.attention').__table__()
        self.cursor = Transaction().connection.cursor()
        self.user = Transaction().user

    def execute(self):
        pool = Pool()
        Administration = pool.get('payt.administration')
        # Serialise runs of one administration: a second, overlapping run
        # waits here and then finds every item already moved.
        Administration.lock([self.administration])
        summary = OrderedDict(
            administration=self.administration.rec_name,
            administration_id=self.administration.id,
            date=self.date.isoformat(), state='done', resumed=0, steps=[])
        summary['resumed'] = self._resume_expired_pauses()
        if not self.flow:
            raise UserError(gettext('payt_dunning.msg_administration_no_flow',
                    administration=self.administration.rec_name))
        held = self._administration_hold()
        if held:
            summary['state'] = held
            return summary
        for index, step in enumerate(self.steps):
            summary['steps'].append(self._move_to(index, step))
        invalidate_caches()
        summary['items_moved'] = sum(s['moved'] for s in summary['steps'])
        summary['communications'] = sum(
            sum(s['communications'].values()) for s in summary['steps'])
        return summary

    def _resume_expired_pauses(self):
        "Pauses whose end date has passed are lifted before anything moves."
        Pause = Pool().get('payt.pause')
        expired = Pause.search([
                ('administration', '=', self.administration.id),
                ('state', '=', 'active'),
                ('end_date', '!=', None),
                ('end_date', '<', self.date),
                ])
        Pause.lift(expired, date=self.date, automatic=True)
        return len(expired)

    def _active_pause(self):
        pause = self.pause
        return ((pause.administration == self.administration.id)
            & (pause.state == 'active')
            & ((pause.end_date == Null) | (pause.end_date >= self.date)))

    def _administration_hold(self):
        pause = self.pause
        self.cursor.execute(*pause.select(pause.kind,
                where=self._active_pause() & (pause.debtor == Null)
                & (pause.item == Null)))
        kinds = {k for k, in self.cursor}
        if 'stop' in kinds:
            return 'stopped'
        if 'pause' in kinds:
            return 'paused'
        return None

    def _followed(self):
        "Open, positive items of the administration not held at any level."
        item, pause = self.item, self.pause
        held_items = pause.select(pause.item,
            where=self._active_pause() & (pause.item != Null))
        held_debtors = pause.select(pause.debtor,
            where=self._active_pause() & (pause.debtor != Null)
            & (pause.item == Null))
        return ((item.administration == self.administration.id)
            & (item.state == 'open')
            & (item.open_amount > 0)
            & ~item.id.in_(held_items)
            & ~item.debtor.in_(held_debtors))

    def _cut(self, step):
        "Items due on or before this date are due for the step."
        return self.date - datetime.timedelta(days=step.lead_days)

    def _move_to(self, index, step):
        item = self.item
        later = [s.id for s in self.steps[index:]]
        passing = (self._followed()
            & (item.due_date <= self._cut(step))
            & ((item.step == Null) | ~item.step.in_(later)))
        if index + 1 < len(self.steps):
            is_target = item.due_date > self._cut(self.steps[index + 1])
        else:
            is_target = const(True, 'BOOLEAN')
        below = item.open_amount < step.min_amount
        reached = passing & is_target
        report = self._count(step, passing, is_target, below)
        if not (report['moved'] or report['skipped_below_minimum']):
            return report
        self._insert_events(step, index, reached, below)
        report['communications'] = self._insert_communications(
            step, reached & ~below)
        self._insert_below_minimum_attention(step, reached & below)
        performed = performed_items(self.administration, item,
            reached & ~below)
        self.cursor.execute(*item.update(
                [item.step, item.step_date], [step.id, self.date],
                where=reached))
        emit_step_performed(self.administration, step, performed, self.date)
        return report

    def _count(self, step, passing, is_target, below):
        item = self.item
        one, zero = const(1, 'INTEGER'), const(0, 'INTEGER')
        moved = is_target & ~below
        self.cursor.execute(*item.select(
                Sum(Case((moved, one), else_=zero)),
                Sum(Case((moved, item.open_amount), else_=const(0, 'NUMERIC'))),
                Sum(Case((is_target & below, one), else_=zero)),
                Sum(Case((is_target, zero), else_=one)),
                where=passing))
        moved, amount, below_count, overtaken = self.cursor.fetchone()
        return OrderedDict(
            step=step.name, lead_days=step.lead_days,
            moved=int(moved or 0),
            amount=str(Decimal(str(amount or 0)).quantize(Decimal('0.01'))),
            skipped_below_minimum=int(below_count or 0),
            skipped_overtaken=int(overtaken or 0),
            communications={c: 0 for c in step.channels or []})

    def _insert_events(self, step, index, reached, below):
        """One timeline event per item reaching the step. It names the
        earlier steps the item skipped because a later one was already due
        (an item imported late, or paused for a while), so no step is
        skipped silently, without a row per skipped step."""
        item, event = self.item, self.event

        def text(below, skipped):
            key = 'msg_event_step_below_minimum' if below else (
                'msg_event_step_reached')
            if skipped:
                key += '_skipped'
            params = event_params(step=step, min_amount=step.min_amount
                if below else None, steps=[s.id for s in skipped] or None)
            return key, params

        # The steps skipped depend on where the item stood: after step j,
        # it skipped j+1 .. index-1; without a step of this flow, all before.
        branches = []
        for j, current in enumerate(self.steps[:index]):
            skipped = self.steps[j + 1:index]
            branches.append((below & (item.step == current.id),
                    text(True, skipped)))
            branches.append((item.step == current.id, text(False, skipped)))
        branches.append((below, text(True, self.steps[:index])))
        otherwise = text(False, self.steps[:index])
        text_key, text_params = (Case(
                *[(condition, const(t[i], 'VARCHAR'))
                    for condition, t in branches],
                else_=const(otherwise[i], 'VARCHAR')) for i in (0, 1))
        kind = Case((below, const('skipped', 'VARCHAR')),
            else_=const('step', 'VARCHAR'))
        self.cursor.execute(*event.insert(
                [event.company, event.item, event.date, event.kind,
                    event.step, event.text_key, event.text_params,
                    event.create_uid, event.create_date],
                item.select(item.company, item.id, const(self.date, 'DATE'),
                    kind, const(step.id, 'INTEGER'), text_key, text_params,
                    const(self.user, 'INTEGER'),
                    CurrentTimestamp(), where=reached)))

    def _insert_communications(self, step, where):
        item, communication = self.item, self.communication
        created = OrderedDict()
        for channel in step.channels or []:
            self.cursor.execute(*communication.insert(
                    [communication.company, communication.item,
                        communication.step, communication.channel,
                        communication.run_date, communication.state,
                        communication.kind, communication.idempotency_key,
                        communication.create_uid, communication.create_date],
                    item.select(item.company, item.id,
                        const(step.id, 'INTEGER'), const(channel, 'VARCHAR'),
                        const(self.date, 'DATE'), const('pending', 'VARCHAR'),
                        const('reminder', 'VARCHAR'), random_key(),
                        const(self.user, 'INTEGER'),
                        CurrentTimestamp(), where=where),
                    on_conflict=do_nothing_on_conflict(communication, [
                            communication.item, communication.step,
                            communication.channel])))
            created[channel] = max(self.cursor.rowcount, 0)
        return created

    def _insert_below_minimum_attention(self, step, where):
        item, attention = self.item, self.attention
        already = attention.select(attention.item,
            where=(attention.reason == 'below_minimum')
            & (attention.state == 'open')
            & (attention.administration == self.administration.id))
        self.cursor.execute(*attention.insert(
                [attention.company, attention.administration,
                    attention.debtor, attention.item, attention.reason,
                    attention.text_key, attention.text_params,
                    attention.date, attention.state,
                    attention.create_uid, attention.create_date],
                item.select(item.company, item.administration, item.debtor,
                    item.id, const('below_minimum', 'VARCHAR'),
                    const('msg_attention_below_minimum', 'VARCHAR'),
                    const(event_params(step=step), 'VARCHAR'),
                    const(self.date, 'DATE'), const('open', 'VARCHAR'),
                    const(self.user, 'INTEGER'),
                    CurrentTimestamp(),
                    where=where & ~item.id.in_(already))))


class Run(CompanyConsistentMixin, ModelSQL, ModelView):
    "Daily Run"
    __name__ = 'payt.run'
    __string__ = "Daily Run"
    company = fields.Many2One(
        'company.company', "Company", required=True, readonly=True)
    administration = fields.Many2One(
        'payt.administration', "Administration", required=True,
        readonly=True, ondelete='CASCADE')
    date = fields.Date("Date", required=True, readonly=True)
    state = fields.Char("Outcome", readonly=True)
    items_moved = fields.Integer("Items Moved", readonly=True)
    communications = fields.Integer("Communications Created", readonly=True)
    summary = fields.Text("Summary", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls._order = [('date', 'DESC'), ('id', 'DESC')]

    @classmethod
    def execute(cls, administration, date, dry_run=False):
        """Run one administration for one date and return the summary.

        A dry run is the real run in a transaction that is rolled back, so
        its preview is exactly what a real run would do."""
        if dry_run:
            transaction = Transaction()
            cursor = transaction.connection.cursor()
            # A savepoint, not a second transaction: SQLite shares one
            # connection per database.
            cursor.execute('SAVEPOINT payt_dry_run')
            try:
                with transaction.set_context(payt_hold_delivery=True):
                    summary = cls._daily_run(administration, date)
            finally:
                cursor.execute('ROLLBACK TO SAVEPOINT payt_dry_run')
                cursor.execute('RELEASE SAVEPOINT payt_dry_run')
                invalidate_caches()
            summary['dry_run'] = True
            return summary
        summary = cls._daily_run(administration, date)
        summary['dry_run'] = False
        cls.create([{
                    'company': administration.company.id,
                    'administration': administration.id,
                    'date': date,
                    'state': summary['state'],
                    'items_moved': summary.get('items_moved', 0),
                    'communications': summary.get('communications', 0),
                    'summary': json.dumps(summary, indent=1),
                    }])
        return summary

    @classmethod
    def _daily_run(cls, administration, date):
        summary = DailyRun(administration, date).execute()
        if Transaction().context.get('payt_preview_samples'):
            # Still inside the preview's savepoint: the communications the
            # run just created are there to be rendered.
            preview_samples(administration, date, summary)
        return summary

    @classmethod
    def cron_daily(cls):
        """The daily run and the sending of every administration, each
        committed on its own: one that fails is recorded as failed and
        leaves the others alone."""
        pool = Pool()
        Administration = pool.get('payt.administration')
        today = pool.get('ir.date').today()
        transaction = Transaction()
        transaction.commit()
        for administration in Administration.search([]):
            try:
                cls._daily_of(administration, today)
                transaction.commit()
            except Exception as exception:
                transaction.rollback()
                invalidate_caches()
                logger.exception("Daily run of %s failed", administration.id)
                cls._failed(Administration(administration.id), today,
                    exception)
                transaction.commit()

    @classmethod
    def _daily_of(cls, administration, date):
        cls.execute(administration, date)
        Pool().get('payt.communication').send_pending(administration)

    @classmethod
    def _failed(cls, administration, date, exception):
        "A run that failed is on record, with why."
        summary = {'administration': administration.id,
            'date': date.isoformat(), 'state': 'failed',
            'error': str(exception)[:1000]}
        cls.create([{'company': administration.company.id,
                    'administration': administration.id, 'date': date,
                    'state': 'failed', 'items_moved': 0,
                    'communications': 0,
                    'summary': json.dumps(summary, indent=1)}])


class Cron(metaclass=PoolMeta):
    __name__ = 'ir.cron'

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.method.selection.append(
            ('payt.run|cron_daily', "Run Daily Dunning"))


SAMPLES = 2


def preview_samples(administration, date, summary):
    """Add to each step of a preview the warnings and a few of the messages
    it creates, rendered as the debtor would read them."""
    if not administration.flow:
        return
    Communication = Pool().get('payt.communication')
    for step, report in zip(administration.flow.steps_in_order(),
            summary['steps']):
        created = Communication.search([
                ('step', '=', step.id),
                ('run_date', '=', date),
                ('state', '=', 'pending'),
                ('item.administration', '=', administration.id),
                ], order=[('id', 'ASC')])
        report['warnings'] = step_warnings(step, report, created)
        report['samples'] = [render_sample(c) for c in created[:SAMPLES]]


def step_warnings(step, report, communications):
    warnings = []
    languages = {t.language for t in step.templates}
    missing = sorted({c.item.debtor.language for c in communications
            if c.channel in ('email', 'letter')} - languages)
    if missing:
        warnings.append(gettext('payt_dunning.msg_run_preview_no_text',
                step=step.rec_name, languages=', '.join(missing)))
    no_address = sum(1 for c in communications
        if c.channel == 'email' and not c.item.debtor.email)
    if no_address:
        warnings.append(gettext('payt_dunning.msg_run_preview_no_email',
                count=no_address))
    if report.get('skipped_below_minimum'):
        warnings.append(gettext('payt_dunning.msg_run_preview_below_minimum',
                count=report['skipped_below_minimum'],
                minimum=step.min_amount))
    return warnings


def render_sample(communication):
    "What the debtor of the communication would receive."
    debtor = communication.item.debtor
    if communication.channel in ('sms', 'call'):
        subject, body = '', communication._phone_text()
    else:
        subject, body = communication.render()
    return OrderedDict(channel=communication.channel,
        to=debtor.name, address=(debtor.email
            if communication.channel == 'email' else debtor.phone
            if communication.channel in ('sms', 'call') else debtor.city),
        language=debtor.language, item=communication.item.rec_name,
        subject=subject or '', body=body or '')


class RunPreviewStep(ModelView):
    "Run Preview per Step"
    __name__ = 'payt.run.preview.step'
    __string__ = "Run Preview per Step"
    administration = fields.Char("Administration", readonly=True)
    step = fields.Char("Step", readonly=True)
    lead_days = fields.Integer("Lead Time (days)", readonly=True)
    count = fields.Integer("Items Moving", readonly=True)
    amount = fields.Numeric("Open Amount", digits=(16, 2), readonly=True)
    communications = fields.Char("Messages", readonly=True)
    warnings = fields.Text("Warnings", readonly=True)
    samples = fields.Text("Sample Messages", readonly=True)


class RunStart(ModelView):
    "Run Dunning"
    __name__ = 'payt.run.start'
    __string__ = "Run Dunning"
    date = fields.Date("Date", required=True)
    outcome = fields.Char("Outcome", readonly=True)
    steps = fields.One2Many('payt.run.preview.step', None, "Preview",
        readonly=True)
    samples = fields.Text("Sample Messages", readonly=True)
    # The preview as JSON between the wizard's states.
    preview = fields.Text("Preview", readonly=True)


class RunWizard(Wizard):
    "Run Dunning"
    __name__ = 'payt.run.wizard'
    __string__ = "Run Dunning"
    # Enter previews: the real run takes a click on its own button.
    start = StateView('payt.run.start',
        'payt_dunning.run_start_view_form', [
            Button("Close", 'end', 'tryton-cancel'),
            Button("Preview", 'preview', 'tryton-search', default=True),
            Button("Run", 'run', 'tryton-ok'),
            ])
    preview = StateTransition()
    run = StateTransition()

    def default_start(self, fields):
        pool = Pool()
        today = pool.get('ir.date').today()
        values = {'date': today, 'steps': []}
        if getattr(self.start, 'preview', None):
            values['date'] = self.start.date
            values['preview'] = self.start.preview
            summaries = json.loads(self.start.preview)
            values['outcome'] = ', '.join(sorted({
                        summary_state(s) for s in summaries}))
            values['steps'] = [preview_line(s, step)
                for s in summaries for step in s['steps']]
            values['samples'] = "\n\n".join(
                "== %(administration)s, %(step)s ==\n%(samples)s" % line
                for line in values['steps'] if line['samples'])
        return values

    def _summaries(self, dry_run):
        Run = Pool().get('payt.run')
        return [Run.execute(a, self.start.date, dry_run=dry_run)
            for a in self.records]

    def transition_preview(self):
        with Transaction().set_context(payt_preview_samples=True):
            summaries = self._summaries(True)
        self.start.preview = json.dumps(summaries)
        return 'start'

    def transition_run(self):
        self._summaries(False)
        return 'end'


def summary_state(summary):
    return "%s: %s" % (summary['administration'], summary['state'])


def preview_line(summary, step):
    "A row of the preview: a step of an administration."
    samples = "\n\n".join(format_sample(s) for s in step.get('samples', []))
    return {
        'administration': summary['administration'],
        'step': step['step'],
        'lead_days': step['lead_days'],
        'count': step['moved'],
        'amount': Decimal(step['amount']),
        'communications': ", ".join("%s %s" % (n, c)
            for c, n in step['communications'].items()),
        'warnings': "\n".join(step.get('warnings', [])),
        'samples': samples,
        }


def format_sample(sample):
    lines = ["%(channel)s: %(to)s <%(address)s> (%(language)s), %(item)s"
        % sample]
    if sample['subject']:
        lines.append(sample['subject'])
    lines.append(sample['body'])
    return "\n".join(lines)


def format_summaries(summaries):
    "A summary as a person reads it."
    lines = []
    for summary in summaries:
        prefix = "DRY RUN " if summary.get('dry_run') else ""
        lines.append("%s%s on %s: %s" % (prefix, summary['administration'],
                summary['date'], summary['state']))
        if summary.get('resumed'):
            lines.append("  %s pause(s) ended and resumed" % summary['resumed'])
        for step in summary['steps']:
            comms = ", ".join("%s %s" % (n, c)
                for c, n in step['communications'].items()) or "none"
            lines.append(
                "  %-28s %+4dd  moved %6d  (%s)  skipped: %d below minimum, "
                "%d overtaken  communications: %s" % (
                    step['step'][:28], step['lead_days'], step['moved'],
                    step['amount'], step['skipped_below_minimum'],
                    step['skipped_overtaken'], comms))
    return "\n".join(lines)
