# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Dunning flows: ordered steps at a lead time from the due date."""
import string
from decimal import Decimal

from trytond.i18n import gettext
from trytond.model import (
    DeactivableMixin, ModelSQL, ModelView, Unique, fields)
from trytond.model.exceptions import ValidationError
from trytond.pool import Pool
from trytond.transaction import Transaction

from .company import CompanyConsistentMixin

CHANNELS = [
    ('email', "Email"),
    ('sms', "SMS"),
    ('call', "Robocall"),
    ('letter', "Letter by post"),
    ]
LANGUAGES = [
    ('nl', "Dutch"),
    ('en', "English"),
    ]
DEBTOR_KINDS = [
    ('consumer', "Consumer"),
    ('business', "Business"),
    ]
# What a template may refer to; filled per item when a communication is sent.
PLACEHOLDERS = (
    'debtor_name', 'company', 'invoice_number', 'invoice_date', 'due_date',
    'amount', 'open_amount', 'currency', 'days_overdue', 'description',
    'collection_costs', 'portal_url', 'iban', 'payment_reference',
    'payment_link', 'payment_instruction')


class Flow(
        CompanyConsistentMixin, DeactivableMixin, ModelSQL, ModelView):
    "Dunning Flow"
    __name__ = 'payt.flow'
    __string__ = "Dunning Flow"
    name = fields.Char("Name", required=True, translate=True)
    company = fields.Many2One(
        'company.company', "Company",
        help="Leave empty for a flow every administration may use.")
    shared = fields.Function(fields.Boolean("Shared",
            help="Without a company, every administration may use the "
            "flow and a change applies to all of them."),
        'on_change_with_shared')
    steps = fields.One2Many('payt.flow.step', 'flow', "Steps")
    per_invoice = fields.Boolean("One Email per Invoice",
        help="Send each invoice its own email. Without it a debtor gets one "
        "email per step and day listing every invoice due for it, with the "
        "total (a letter always lists them all).")

    @staticmethod
    def default_per_invoice():
        return False

    @fields.depends('company')
    def on_change_with_shared(self, name=None):
        return not self.company

    @classmethod
    def default_company(cls):
        return Transaction().context.get('company')

    def steps_in_order(self):
        return sorted(self.steps, key=lambda s: s.lead_days)


class Step(ModelSQL, ModelView):
    "Dunning Flow Step"
    __name__ = 'payt.flow.step'
    __string__ = "Dunning Flow Step"
    flow = fields.Many2One(
        'payt.flow', "Flow", required=True, ondelete='CASCADE')
    name = fields.Char("Name", required=True, translate=True)
    lead_days = fields.Integer(
        "Lead Time (days)", required=True,
        help="Days after the due date the step is due; negative for a "
        "notice before the due date.")
    action = fields.Selection([
            ('remind', "Reminder"),
            ('final_notice', "Final notice"),
            ('collection', "Hand over to collection"),
            ], "Action", required=True,
        help="Final notice: for consumers the WIK 14-day letter. "
        "Hand over: the item becomes a collection case.")
    channels = fields.MultiSelection(CHANNELS, "Channels")
    min_amount = fields.Numeric(
        "Minimum Open Amount", digits=(16, 2), required=True,
        help="Items with a smaller open amount skip this step "
        "(recorded on their timeline).")
    templates = fields.One2Many(
        'payt.flow.step.template', 'step', "Templates")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls._order.insert(0, ('lead_days', 'ASC'))
        t = cls.__table__()
        cls._sql_constraints += [
            ('flow_lead_unique', Unique(t, t.flow, t.lead_days),
                'payt_dunning.msg_step_lead_unique'),
            ]

    @staticmethod
    def default_action():
        return 'remind'

    @staticmethod
    def default_channels():
        return ['email']

    @staticmethod
    def default_min_amount():
        return Decimal('0')

    @classmethod
    def validate_fields(cls, steps, field_names):
        super().validate_fields(steps, field_names)
        for step in steps:
            if step.min_amount is not None and step.min_amount < 0:
                raise ValidationError(gettext(
                        'payt_dunning.msg_step_min_amount_negative',
                        step=step.rec_name))
        cls._check_texts(steps)

    @classmethod
    def _check_texts(cls, steps):
        """A step that sends something has a text in every language of the
        debtors of the administrations that follow its flow."""
        pool = Pool()
        Debtor = pool.get('payt.debtor')
        Field = pool.get('ir.model.field')
        for step in steps:
            if not step.channels:
                continue
            languages = {d.language for d in Debtor.search([
                        ('administration.flow', '=', step.flow.id),
                        ])}
            missing = sorted(languages - {t.language for t in step.templates})
            if missing:
                selection = dict(LANGUAGES)
                raise ValidationError(gettext(
                        'payt_dunning.msg_step_text_missing',
                        step=step.rec_name,
                        field=Field.get_name(cls.__name__, 'templates'),
                        channels=', '.join(dict(CHANNELS)[c]
                            for c in step.channels),
                        languages=', '.join(
                            selection.get(m, m) for m in missing)))

    def template_for(self, language, kind):
        "The best template for a debtor: exact kind first, then any kind."
        def rank(template):
            return (
                template.language != language,
                template.debtor_kind not in (kind, None),
                template.debtor_kind is None)
        candidates = [t for t in self.templates
            if t.debtor_kind in (kind, None)]
        return min(candidates, key=rank, default=None)


class StepTemplate(ModelSQL, ModelView):
    "Dunning Flow Step Template"
    __name__ = 'payt.flow.step.template'
    __string__ = "Dunning Flow Step Template"
    step = fields.Many2One(
        'payt.flow.step', "Step", required=True, ondelete='CASCADE')
    language = fields.Selection(LANGUAGES, "Language", required=True)
    debtor_kind = fields.Selection(
        [(None, "Any")] + DEBTOR_KINDS, "Debtor Kind",
        help="Leave empty for a text used for consumers and businesses.")
    subject = fields.Char("Subject", required=True)
    body = fields.Text(
        "Body", required=True,
        help="Placeholders: " + ", ".join(
            '${%s}' % p for p in PLACEHOLDERS))

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.__access__.add('step')

    @classmethod
    def validate_fields(cls, templates, field_names):
        super().validate_fields(templates, field_names)
        dummy = {p: p for p in PLACEHOLDERS}
        for template in templates:
            for name in ['subject', 'body']:
                try:
                    string.Template(getattr(template, name) or '').substitute(
                        dummy)
                except (KeyError, ValueError) as exception:
                    raise ValidationError(gettext(
                            'payt_dunning.msg_template_invalid',
                            field=name, language=template.language,
                            step=template.step.rec_name, error=exception,
                            available=', '.join(PLACEHOLDERS)))
        seen = set()
        for template in templates:
            key = (template.step.id, template.language, template.debtor_kind)
            if key in seen or cls.search([
                        ('id', '!=', template.id),
                        ('step', '=', template.step.id),
                        ('language', '=', template.language),
                        ('debtor_kind', '=', template.debtor_kind),
                        ], limit=1):
                raise ValidationError(gettext(
                        'payt_dunning.msg_template_language_unique',
                        step=template.step.rec_name,
                        language=template.language,
                        kind=template.debtor_kind or 'any'))
            seen.add(key)

    def render(self, values):
        "Subject and body filled with the item's values."
        return (
            string.Template(self.subject).safe_substitute(values),
            string.Template(self.body).safe_substitute(values))
