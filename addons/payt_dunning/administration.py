# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""An administration: one company whose invoices are followed up."""
from stdnum.iban import format as iban_format

from trytond.exceptions import UserError
from trytond.model.exceptions import ValidationError
from trytond.i18n import gettext
from trytond.model import ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool
from trytond.pyson import Eval
from trytond.rpc import RPC
from trytond.transaction import Transaction

from .company import CompanyConsistentMixin
from .importer import BatchImporter
from .pause import PausableMixin
from .payment_data import PaymentData, payment_reference, validate_iban


class Administration(
        CompanyConsistentMixin, PausableMixin, ModelSQL, ModelView):
    "Administration"
    __name__ = 'payt.administration'
    __string__ = "Administration"
    company = fields.Many2One(
        'company.company', "Company", required=True, ondelete='CASCADE',
        help="Each administration is a company: users see only the "
        "administrations of their companies.")
    name = fields.Function(fields.Char("Name"), 'get_name',
        searcher='search_name')
    currency = fields.Function(
        fields.Many2One('currency.currency', "Currency"), 'get_currency')
    iban = fields.Char("IBAN",
        help="The account debtors pay into: stated on every reminder and "
        "letter, and in the QR code of letters.")
    flow = fields.Many2One(
        'payt.flow', "Dunning Flow", required=True,
        domain=[('company', 'in', [None, Eval('company', -1)])])
    debtors = fields.One2Many('payt.debtor', 'administration', "Debtors",
        readonly=True)
    step_summary = fields.One2Many(
        'payt.dashboard.step', 'administration', "Items per Step",
        readonly=True)
    attentions = fields.One2Many(
        'payt.attention', 'administration', "Points of Attention",
        filter=[('state', '=', 'open')], readonly=True)
    pauses = fields.One2Many('payt.pause', 'administration', "Pauses",
        readonly=True, filter=[('debtor', '=', None), ('item', '=', None)])
    runs = fields.One2Many('payt.run', 'administration', "Runs",
        readonly=True, order=[('create_date', 'DESC')])

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('company_unique', Unique(t, t.company),
                'payt_dunning.msg_administration_company_unique'),
            ]
        cls.__rpc__.update({
                'import_batch': RPC(readonly=False, instantiate=None),
                })
        cls._buttons.update({
                'run_wizard': {},
                })

    @classmethod
    def validate_fields(cls, administrations, field_names):
        super().validate_fields(administrations, field_names)
        if 'iban' in field_names:
            for administration in administrations:
                administration.check_iban()

    def check_iban(self):
        if not self.iban:
            return
        try:
            validate_iban(self.iban)
        except ValueError:
            raise ValidationError(gettext(
                    'payt_dunning.msg_administration_iban_invalid',
                    iban=self.iban, administration=self.rec_name))

    @fields.depends('iban')
    def on_change_iban(self):
        "Shown and stored as the bank prints it: NL91 ABNA 0417 1643 00."
        try:
            self.iban = iban_format(validate_iban(self.iban))
        except (ValueError, TypeError):
            pass

    def payment_data(self, debtor, numbers, amount, link):
        "What the debtor needs to pay `amount` for the items `numbers`."
        return PaymentData(beneficiary=self.name,
            iban=(self.iban or '').replace(' ', '').upper(),
            reference=payment_reference(numbers, debtor.external_id),
            amount=amount, currency=self.currency.code, link=link)

    @staticmethod
    def default_company():
        return Transaction().context.get('company')

    @classmethod
    def default_flow(cls):
        pool = Pool()
        ModelData = pool.get('ir.model.data')
        try:
            return ModelData.get_id('payt_dunning', 'flow_default_nl')
        except KeyError:
            return None

    def get_name(self, name):
        return self.company.rec_name

    @classmethod
    def search_name(cls, name, clause):
        return [('company.party.name',) + tuple(clause[1:])]

    def get_rec_name(self, name):
        return self.name

    @classmethod
    def search_rec_name(cls, name, clause):
        return cls.search_name(name, clause)

    def get_currency(self, name):
        return self.company.currency.id

    def pause_scope(self):
        return {'administration': self.id}

    @classmethod
    def by_name(cls, name):
        "The administration named or numbered `name`, for the CLI."
        records = cls.search([('name', '=', name)], limit=1)
        if not records and str(name).isdigit():
            records = cls.search([('id', '=', int(name))], limit=1)
        if not records:
            raise UserError(gettext(
                    'payt_dunning.msg_administration_unknown',
                    administration=name,
                    known=', '.join(a.name for a in cls.search([]))))
        return records[0]

    @classmethod
    def import_batch(cls, administration_id, batch):
        """Upsert a batch of debtors, open items and payments.

        See docs/IMPORT-BATCH.md. The whole batch is validated before
        anything is written; any error rejects it as a whole.
        """
        pool = Pool()
        ModelAccess = pool.get('ir.model.access')
        # The importer writes with SQL, so check here what the ORM would:
        # the right to create items, and the record rules, which keep a
        # user out of the administrations of other companies.
        ModelAccess.check('payt.item', 'create')
        cls.read([int(administration_id)], ['company'])
        administration = cls(int(administration_id))
        return BatchImporter(administration).run(batch)

    @classmethod
    @ModelView.button_action('payt_dunning.wizard_run')
    def run_wizard(cls, administrations):
        pass
