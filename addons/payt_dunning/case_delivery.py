# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Case letters leave through the outbound path of the communications.

A case letter goes to the print-and-mail provider (or into the self-post
batch) when it is posted, or by SMTP with its PDF attached when it is
emailed and the debtor has an address. The letter's date, its 14-day term
and the day costs may be charged run from the day it was handed over, not
from the day it was rendered: a letter the provider refused waits, and
stops the case, until a later send hands it over."""
from email.message import EmailMessage
from email.utils import formataddr

from trytond import config
from trytond.i18n import gettext
from trytond.model import fields
from trytond.pool import Pool, PoolMeta
from trytond.transaction import Transaction

from . import law
from .providers import Job, Outgoing, call_provider

DELIVERY = [
    (None, ""),
    ('pending', "Waiting to be sent"),
    ('queued', "Ready to post in-house"),
    ('sent', "Handed over"),
    ('failed', "Failed"),
    ]


def _case_date():
    from .case import _case_date
    return _case_date()


class CaseLetter(metaclass=PoolMeta):
    __name__ = 'payt.case.letter'
    delivery = fields.Selection(DELIVERY, "Delivery", readonly=True)
    delivery_key = fields.Char("Delivery Reference", readonly=True,
        help="Sent to the provider with the letter: a repeated send is "
        "recognised instead of printed twice.")
    provider = fields.Char("Provider", readonly=True)
    provider_id = fields.Char("Provider Reference", readonly=True)
    delivery_error = fields.Char("Delivery Error", readonly=True)

    @classmethod
    def default_delivery_key(cls):
        "On record from the start: every send of it carries the same."
        return Pool().get('payt.communication').new_reference()

    @classmethod
    def _on_timeline(cls, letters):
        """Handed over first: the timeline shows what left, when it left.
        A dry run or a run told not to send hands nothing over: its letters
        wait for the next send (send_pending)."""
        if Transaction().context.get('payt_hold_delivery'):
            for letter in letters:
                letter.delivery = 'pending'
            cls.save(letters)
            return
        cls.deliver(letters, _case_date())
        super()._on_timeline([l for l in letters if l.delivery == 'sent'])

    @classmethod
    def send_pending(cls, administration=None):
        """Hand over the letters a provider refused before; return how
        many went. Their term runs from today."""
        domain = [('delivery', '=', 'pending')]
        if administration:
            domain.append(('case.administration', '=',
                    getattr(administration, 'id', administration)))
        letters = cls.search(domain, order=[('id', 'ASC')])
        cls.deliver(letters, _case_date())
        sent = [l for l in letters if l.delivery == 'sent']
        cls._timeline_of(sent)
        return len(sent)

    @classmethod
    def _timeline_of(cls, letters):
        "The 'sent' events of letters handed over (CaseLetter._on_timeline)."
        super()._on_timeline(letters)

    @classmethod
    def deliver(cls, letters, date):
        "Hand each letter to its channel; the outcome is on the letter."
        Communication = Pool().get('payt.communication')
        for letter in letters:
            letter.delivery_key = (letter.delivery_key
                or Communication.new_reference())
            debtor = letter.case.debtor
            postal = bool(debtor.street and debtor.city)
            if debtor.email and (letter.channel == 'email' or not postal):
                # Emailed when the flow says so, or when post cannot reach.
                letter._send_email(date)
            else:
                letter._post(date)
        cls.save(letters)

    def _send_email(self, date):
        debtor = self.case.debtor
        from_addr = config.get('email', 'from')
        company = self.case.company.rec_name
        try:
            msg = EmailMessage()
            msg['From'] = formataddr((company, from_addr))
            msg['To'] = debtor.email
            msg['Subject'] = self._subject()
            msg['Message-ID'] = '<%s@%s>' % (
                self.delivery_key, from_addr.split('@')[-1])
        except ValueError as error:
            # A stored value that breaks a header fails this letter alone.
            return self._failed("Cannot address the email: %s" % error)
        msg.set_content(gettext('payt_dunning.msg_case_letter_email',
                self.language).format(name=debtor.name, company=company))
        msg.add_attachment(bytes(self.pdf), maintype='application',
            subtype='pdf', filename=self.pdf_name)
        self._hand_to('smtp', Outgoing(key=self.delivery_key,
                channel='email', to=debtor.email, language=self.language,
                message=msg), date, 'email')

    def _subject(self):
        from .letter import case_letter_content
        return case_letter_content(self).subject

    def _post(self, date):
        debtor = self.case.debtor
        administration = self.case.administration
        if not (debtor.street and debtor.city):
            return self._failed("The debtor has no postal address")
        if getattr(administration, 'letters_self_posted', False):
            # Handed over when the day's batch is downloaded.
            self.provider, self.delivery = 'self', 'queued'
            return
        recipient = {'name': debtor.name, 'street': debtor.street,
            'postal_code': debtor.postal_code or '', 'city': debtor.city,
            'country': debtor.country or 'NL'}
        self._hand_to('printmail', Outgoing(key=self.delivery_key,
                channel='letter', pdf=bytes(self.pdf), recipient=recipient,
                language=self.language), date, 'post')

    def _hand_to(self, provider, outgoing, date, channel):
        """Handed over before the letter is recorded as sent: should the
        transaction not commit, the next send repeats it under the same
        key. A provider that is down waits (channel_backoff)."""
        Backoff = Pool().get('payt.channel.backoff')
        if provider in Backoff.waiting():
            self.delivery = 'pending'
            return
        receipt, error = call_provider(Job(ids=[], provider=provider,
                what="Case letter", outgoing=outgoing))
        if error and error.retry:
            Backoff.failed(provider, error)
            self.delivery, self.delivery_error = 'pending', str(error)[:1000]
            return
        if error:
            return self._failed(str(error))
        Backoff.succeeded(provider)
        self.provider, self.provider_id = provider, receipt.provider_id
        self._handed_over(date, channel)

    def _handed_over(self, date, channel):
        """Sent on `date`: the term, the receipt and the right to charge
        costs run from then (law.fourteen_day_term)."""
        from .letter import case_letter_content, render_letter
        Config = Pool().get('payt.case.configuration')
        config = Config.of(self.case.administration)
        term = law.fourteen_day_term(date, channel,
            post_delivery_days=config.post_delivery_days)
        redated = date != self.date
        self.delivery, self.delivery_error = 'sent', None
        self.date, self.channel = date, channel
        self.receipt_date, self.term_end = term.receipt_date, term.term_end
        if self.fourteen_day:
            self.costs_chargeable_from = term.costs_chargeable_from
        if redated:
            self.pdf = render_letter(case_letter_content(self))

    def _failed(self, error):
        Attention = Pool().get('payt.attention')
        self.delivery, self.delivery_error = 'failed', error[:1000]
        case = self.case
        Attention.raise_for(case.administration, 'letter_returned',
            'msg_attention_case_letter_not_sent', note=error,
            debtor=case.debtor,
            item=case.items[0] if case.items else None)


class Case(metaclass=PoolMeta):
    __name__ = 'payt.case'

    def fourteen_day_letter(self):
        "Only a letter handed over counts (art. 6:96 lid 6 BW)."
        letters = [l for l in self.letters
            if l.fourteen_day and l.delivery in (None, 'sent')]
        return min(letters, key=lambda l: l.date) if letters else None

    def _due(self, config, date):
        "Never past a step whose letter did not leave yet."
        if any(l.step == self.state and l.delivery in ('pending', 'queued')
                for l in self.letters):
            return None
        return super()._due(config, date)


class Communication(metaclass=PoolMeta):
    __name__ = 'payt.communication'

    @classmethod
    def send_pending(cls, administration=None, limit=None):
        "The case letters waiting for their provider go too."
        CaseLetter = Pool().get('payt.case.letter')
        return (super().send_pending(administration, limit)
            + CaseLetter.send_pending(administration))

    @classmethod
    def letter_batch(cls, administration, date):
        """The day's self-posted case letters join the batch, and count as
        handed over once downloaded."""
        from .channel import merge_pdfs
        CaseLetter = Pool().get('payt.case.letter')
        count, pdf = super().letter_batch(administration, date)
        letters = CaseLetter.search([
                ('case.administration', '=', administration.id),
                ('provider', '=', 'self'),
                ('delivery', 'in', ['queued', 'sent']),
                ('date', '=', date),
                ], order=[('id', 'ASC')])
        if not letters:
            return count, pdf
        queued = [l for l in letters if l.delivery == 'queued']
        for letter in queued:
            letter._handed_over(date, 'post')
        CaseLetter.save(queued)
        CaseLetter._timeline_of(queued)
        pdfs = ([pdf] if pdf else []) + [bytes(l.pdf) for l in letters]
        return count + len(letters), merge_pdfs(pdfs)
