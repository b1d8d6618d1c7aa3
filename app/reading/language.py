"""What a customer's words say about a refund: asked for, taken back, or disputed.

Languages understood: English, German, French and Spanish (`LANGUAGES`). Every text is read
with all four lexicons at once (tickets mix languages; a German customer writes "refund").

Before anything is judged, quoted history is dropped (`strip_quoted`): lines starting with
`>`, and everything after a reply or forward header ("On ... wrote:", "Am ... schrieb ...:",
"Le ... a écrit :", "El ... escribió:", "-----Original Message-----", "---------- Forwarded
message ---------", a "From:/Von:/De:" header block followed by "Sent:/Date:/To:" lines).

Where the lines are drawn (the rules tier writes only on the first; everything else goes to
the model tier or a human, so a doubt costs a model call, never a wrong refund):

- A **request** is an unconditional ask for a refund in a sentence of its own: a polite
  imperative ("Please refund ...", "Refund me", "Bitte erstatten Sie ...", "Remboursez-moi",
  "Por favor, reembolsen ..."), a statement of want ("I'd like a refund", "Ich möchte eine
  Rückerstattung", "Je souhaite être remboursé", "Quiero un reembolso"), or a question that
  asks *us* to act ("Can you please refund ...?", "Können Sie ... erstatten?", "Pouvez-vous
  me rembourser ?", "¿Pueden reembolsarme ...?"), or leave to go ahead ("You can proceed
  with the refund", "Sie können die Erstattung vornehmen", "Vous pouvez procéder au
  remboursement", "Pueden proceder al reembolso").
- A **question** asks for information, including whether the customer *could* get one:
  "Is it possible to get a refund?", "Would I get the full amount back?", "Could I get a
  refund?", "Can I have a refund?" (the customer is the subject: they ask about eligibility,
  not for the act), "How long does a refund take?", "Could you tell me if ...".
- **Conditional** or hypothetical wording is not a request ("If the parcel doesn't arrive,
  I want a refund", "I might ask for a refund", "falls ...", "si ...", "si no ...");
  politeness is not a condition ("if possible", "wenn möglich", "si possible", "si es
  posible", "if you could").
- A refund word without an ask is a **mention** ("I was promised a refund"); a complaint
  without a refund word is **none**.

A withdrawal (`withdrawal`) is read clause by clause: a certain cue ("never mind", "forget
the refund", "I'll keep it", "cancel my refund request", "ich brauche die Erstattung nicht
mehr", "annulez ma demande", "ya no necesito el reembolso", ...) is certain; a negation left
in the same clause as a refund word once the harmless negations are taken out ("didn't
arrive", "don't forget", "don't want to wait", "not happy", "still no refund") is a finding
with `certain=False`, which callers escalate on.

A dispute (`dispute`) is any mention of a chargeback, legal action, a regulator or fraud,
negated or not: "I don't want to file a chargeback, just refund me" still goes to a human
(the customer is weighing one, and a refund during a chargeback pays twice); the finding is
then `certain=False`. A bare "dispute" without a bank or card ("no dispute here") is not one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

LANGUAGES = ("en", "de", "fr", "es")

IntentKind = Literal["request", "negated", "conditional", "question", "mention", "quoted", "none"]
DisputeKind = Literal["chargeback", "legal", "regulator", "fraud"]


@dataclass(frozen=True)
class Intent:
    """What the text does about a refund, with the sentence that decided it."""

    kind: IntentKind
    sentence: str = ""

    @property
    def requested(self) -> bool:
        """Whether the text explicitly and unconditionally asks for a refund."""
        return self.kind == "request"


@dataclass(frozen=True)
class Finding:
    """A withdrawal or a dispute found in a text: which kind, the sentence, how sure."""

    kind: str
    sentence: str
    certain: bool = True


def _union(*parts: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in parts), re.IGNORECASE)


# --- quoted history --------------------------------------------------------------------------

_QUOTE_HEADERS = re.compile(
    r"^\s*(?:"
    r"on\b[^\n]{0,300}?\bwrote:"
    r"|am\b[^\n]{0,300}?\bschrieb\b[^\n]{0,200}?:"
    r"|le\b[^\n]{0,300}?\ba écrit\s?:"
    r"|el\b[^\n]{0,300}?\bescribió\s?:"
    r"|-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine|mensaje original)"
    r"|-{2,}\s*(?:forwarded message|weitergeleitete nachricht|message transféré|mensaje reenviado)"
    r")",
    re.IGNORECASE | re.MULTILINE,
)
_FROM_LINE = re.compile(r"^\s*(?:from|von|de)\s?:\s*\S", re.IGNORECASE)
_HEADER_LINE = re.compile(
    r"^\s*(?:sent|date|to|cc|subject|gesendet|datum|an|betreff|envoyé|date|à|objet|enviado|"
    r"fecha|para|asunto)\s?:",
    re.IGNORECASE,
)


def strip_quoted(text: str) -> str:
    """The text without quoted history: `>` lines and whatever follows a reply or forward
    header."""
    text = text or ""
    # A mail client may wrap "On <date>, <name>\nwrote:" over two lines: join before matching.
    joined = re.sub(r"\n(?=(?:wrote|schrieb|a écrit|escribió)\b)", " ", text, flags=re.I)
    header = _QUOTE_HEADERS.search(joined)
    if header:
        joined = joined[: header.start()]
    kept: list[str] = []
    lines = joined.split("\n")
    for i, line in enumerate(lines):
        if line.lstrip().startswith(">"):
            continue
        if _FROM_LINE.match(line) and any(_HEADER_LINE.match(n) for n in lines[i + 1 : i + 5]):
            break
        kept.append(line)
    return "\n".join(kept).strip()


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+|(?<=[.!?])(?=¿|¡)")


def sentences(text: str) -> list[str]:
    """The text's sentences (and lines), stripped, empty ones dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text or "") if s and s.strip()]


_CLAUSE = re.compile(
    r"\s*[,;:()]\s*|\s+[-–—]\s+|\s+(?:but|and|so|because|since|as|although|though|aber|und|"
    r"denn|weil|da|mais|et|car|parce que|pero|y|porque|ya que|sino)\s+",
    re.IGNORECASE,
)


def clauses(sentence: str) -> list[str]:
    """A sentence cut at commas and conjunctions: the reach of a negation."""
    return [c for c in _CLAUSE.split(sentence) if c and c.strip()]


# --- lexicons --------------------------------------------------------------------------------

_AMOUNT = r"(?:[$€£]\s?\d[\d.,]*|\d[\d.,]*\s?(?:[$€£]|usd|eur|gbp|dollars?|euros?))"

# The refund itself, as a noun or a verb.
REFUND = {
    "en": rf"\brefund\w*|\breimburs\w*|\bmoney back\b|\b(?:my|the) money\b|"
    # "$30.00 back", "the $30.00 for that seat back"
    rf"{_AMOUNT}(?:\s+[\w'-]+){{0,5}}?\s+back\b|"
    # Money back, not any "back" ("no need to call me back" is not about a refund).
    r"\b(?:get|have|want|receive|need|like)\s+(?:(?:my|the|our|all|of|that|this|their|full|"
    r"whole|entire)\s+){0,3}(?:money|payment|funds|cash|amount|sum)\s+back\b",
    "de": rf"(?:rück|zurück)?erstatt\w*|\brückzahlung\w*|\bzurückzahl\w*|\bzurücküberweis\w*|"
    rf"\bgeld zurück\b|\bmein geld\b|\bgutschrift\w*|{_AMOUNT}\s+zurück\b",
    "fr": r"\brembours\w*|\bmon argent\b|\bme rendre\b",
    # "reembólsenme": the imperative with its enclitic pronoun carries a written accent.
    "es": r"\breemb[oó]ls\w*|\bdevoluci[oó]n\w*|\bdevolv\w*|\bdevuelv\w*|\bmi dinero\b",
}
# A statement of want or a polite ask.
ASK = {
    "en": r"\bplease\b|\bpls\b|\bkindly\b|\bi(?:'d| would) (?:like|appreciate|prefer)\b|"
    r"\bi (?:want|need|request|demand|expect)\b|\bi(?:'m| am) (?:asking|requesting)\b|"
    r"\bi ask\b|\brequesting\b|\bgive me\b|\bsend me\b|\bi(?:'d| would) like\b",
    "de": r"\bbitte\b|\bich (?:möchte|will|brauche|benötige|fordere|verlange|beantrage|"
    r"erwarte|wünsche)\b|\bich (?:hätte|würde) gerne?\b|\bich bitte um\b",
    "fr": r"\bs'il vous pla[iî]t\b|\bsvp\b|\bmerci de\b|\bveuillez\b|\bje vous prie\b|"
    r"\bje (?:veux|voudrais|souhaite|souhaiterais|demande|exige|réclame)\b|\bj'aimerais\b",
    "es": r"\bpor favor\b|\b(?:quiero|quisiera|necesito|solicito|pido|exijo|reclamo)\b|"
    r"\bme gustar[ií]a\b|\bles? ruego\b|\bagradecer[ií]a\b",
}
# The refund verb as a command, at the start of a clause.
IMPERATIVE = {
    "en": r"^(?:just |now |so |then )?(?:refund|reimburse)\s+(?:me|us|it|this|that|the|my|"
    r"[$€£\d]|ch_)"
    # "Go ahead with the refund", "Proceed with the refund of $20.00".
    r"|^(?:just |now |so |then )?(?:go ahead|proceed) with\b",
    "de": r"\b(?:zurück)?erstatten sie\b|\büberweisen sie\b|\bgeben sie mir\b|^erstatte\b",
    "fr": r"\bremboursez\b|\brembourse[rz]?-moi\b|\brendez-moi\b|^procédez\b",
    "es": r"\breemb[oó]ls(?:en|e|ad|a)(?:me|nos|lo|la)?\b|\bdevu[eé]lv(?:an|a|ame|anme)\w*\b|"
    r"\bhagan el reembolso\b|^(?:por favor,? )?proceda[n]?\b",
}
# A question that asks us to act ("can you ...").
YOU_CAN = {
    "en": r"\b(?:can|could|would|will) (?:you|u)\b|\bwould you mind\b",
    "de": r"\b(?:können|könnten|würden) sie\b|\b(?:kannst|könntest) du\b",
    "fr": r"\b(?:pouvez|pourriez|voudriez)[- ]vous\b|\b(?:peux|pourrais)[- ]tu\b",
    "es": r"\b(?:puede|pueden|podr[ií]a|podr[ií]an|puedes|podr[ií]as)\b",
}
# Leave for us to go ahead ("you can proceed with the refund", "vous pouvez procéder au
# remboursement", "Sie können die Erstattung vornehmen"): in a ticket it is the customer's
# go-ahead, so a request, unlike "you can see ..." (no refund verb after it).
GO_AHEAD = {
    "en": r"\byou (?:can|may) (?:now |just |please |already )?(?:go ahead|proceed|refund|reimburse|"
    r"issue|process|send)\b",
    "de": r"\b(?:sie können|du kannst)\b[^.?!]{0,60}?\b(?:(?:zurück)?erstatten|zurücküberweisen|"
    r"überweisen|gutschreiben|vornehmen|veranlassen|durchführen|auszahlen|fortfahren)\b",
    "fr": r"\b(?:vous pouvez|tu peux) (?:me |nous )?(?:maintenant |donc |désormais |"
    r"dès maintenant )?(?:procéder|rembourser|effectuer|lancer|faire le remboursement)\b",
    "es": r"\b(?:usted |ustedes )?(?:puede|pueden|puedes) (?:ya )?(?:proceder|reembolsar|"
    r"devolver|hacer el reembolso)\b",
}
# Asking for the refund in the first person, politely ("Can I please have a refund?"): a
# request, unlike "Can I get a refund?" or "Would I get ...", which may be asking whether.
PLEASE_MAY_I = {
    "en": r"\b(?:can|could|may) i (?:please )?(?:have|get|receive)\b.*\bplease\b|"
    r"\b(?:can|could|may) i please (?:have|get|receive)\b",
    "de": r"\b(?:kann|könnte|darf) ich bitte\b|\b(?:kann|könnte|darf) ich\b.*\bbitte\b",
    "fr": r"\b(?:puis-je|pourrais-je)\b.*\b(?:s'il vous pla[iî]t|svp)\b",
    "es": r"\b(?:puedo|podr[ií]a)\b.*\bpor favor\b",
}
# Asking for information, or about the customer's own prospects (not for the act).
INFO = {
    "en": r"\bis it possible\b|\b(?:would|could|can|will|do|did|should|may|am) i\b|"
    r"\bhow (?:long|much|many|do|does|can|soon|would)\b|\bwhen (?:will|can|do|does|is|would)\b|"
    r"\bwhat (?:is|are|happens|if|would)\b|\bwhether\b|\bis there\b|\bare there\b|"
    r"\bdo you (?:offer|give|provide|allow|do)\b|\bdoes (?:the|your|it)\b|"
    r"\b(?:know|ask|understand|check|find out|tell me|let me know) (?:if|whether|how|when|"
    r"what|why)\b|\bi (?:wonder|was wondering)\b|\bwondering\b|\bany chance\b|\beligible\b|"
    r"\bentitled\b",
    "de": r"\bist es möglich\b|\b(?:bekomme|kriege|erhalte|würde|könnte|kann|sollte) ich\b|"
    r"\bwie (?:lange|viel|schnell)\b|\bwann\b|\bob\b|\bgibt es\b|\bhabe ich anspruch\b",
    "fr": r"\best-ce possible\b|\best-il possible\b|\bserai-je\b|\bpourrais-je\b|\bpuis-je\b|"
    r"\best-ce que je\b|\bcombien\b|\bquand\b|\bcomment\b|\bsi je\b|\bsavoir\b",
    "es": r"\bes posible\b|\bcu[aá]nto\b|\bcu[aá]ndo\b|\bc[oó]mo\b|\bsaber\b|"
    r"\b(?:obtener|recibir|conseguir|tener)\b|\bme devolver[ií]an\b|\bhay\b|\btengo derecho\b",
}
# Conditions and hypotheses (politeness such as "if possible" is taken out first).
CONDITION = {
    "en": r"\bif\b|\bunless\b|\bin case\b|\bprovided (?:that )?\b|\bshould (?:it|the|they|this)\b|"
    r"\b(?:might|may) (?:ask|want|need|request|have to)\b|\bwould (?:want|ask|need|request|"
    r"expect)\b|\bthinking (?:about|of)\b|\bconsider(?:ing)?\b|\bmaybe\b|\bperhaps\b|"
    r"\bi(?:'ll| will)(?: have to| probably| likely)? (?:ask|request|want|need|demand)\b",
    "de": r"\bfalls\b|\bwenn\b|\bsofern\b|\bvielleicht\b|\beventuell\b|\bmöglicherweise\b|"
    r"\büberlege\b|\bwerde (?:wohl |vielleicht )?\w+ (?:verlangen|fordern|beantragen)\b",
    "fr": r"\bsi\b|\bau cas où\b|\bpeut-être\b|\béventuellement\b|\bje pourrais\b|"
    r"\bj'envisage\b|\benvisage\b|\bje pense demander\b",
    "es": r"\bsi\b|\ben caso de\b|\bquiz[aá]s?\b|\btal vez\b|\ba lo mejor\b|\bpuede que\b|"
    r"\bestoy pensando\b|\bpienso pedir\b|\bpodr[ií]a pedir\b",
}
POLITE_CONDITION = {
    "en": r"\bif (?:possible|you (?:could|can|would|don't mind))\b|\bif that's ok\b",
    "de": r"\bwenn (?:möglich|es geht|das geht)\b|\bfalls möglich\b",
    "fr": r"\bsi possible\b|\bsi vous (?:le )?pouvez\b|\bsi vous voulez bien\b",
    "es": r"\bsi es posible\b|\bsi (?:pueden|puede|fuera posible)\b|\bsi no es molestia\b",
}
NEGATION = {
    "en": r"\b(?:not|no|never|nor|without|no longer)\b|n't\b|\bdont\b",
    "de": r"\b(?:nicht|kein\w*|nie|niemals)\b",
    "fr": r"\bne\b|\bn'|\bpas\b|\bjamais\b|\bplus besoin\b|\baucun\w*",
    "es": r"\b(?:no|nunca|jam[aá]s|ning[uú]n\w*|sin)\b",
}
# Negations that do not touch the request: taken out of a clause before it is judged.
HARMLESS_NEGATION = {
    "en": r"(?:n't|\bnot|\bnever|\bno longer|\byet to)\s+(?:\w+\s+)?(?:receive|received|get|got|"
    r"gotten|see|seen|hear|heard|arrive|arrived|come|came|show|shown|showed|work|works|working|"
    r"worked|processed|issued|deliver|delivered|fit|fits|match|matches|happy|"
    r"satisfied|pleased|acceptable|ok|okay|fine|right|correct|order|ordered|use|used|"
    r"understand|authori[sz]e\w*|recogni[sz]e\w*)\b|(?:n't|\bnot)\s+(?:want|wish) to wait|"
    r"\bcan(?:'t|not) wait\b|(?:n't|\bnot|\bnever)\s+forget|\bno (?:response|reply|answer|one|"
    r"word)\b|\bstill no\b|\bno (?:refund|reimbursement|money)(?: yet| so far)\b|\bno longer "
    r"(?:works|working|available|sold)\b|\bnot yet\b|\bno idea\b",
    "de": r"\bnicht (?:erhalten|bekommen|angekommen|geliefert|vergessen|zufrieden|funktioniert|"
    r"bestellt|autorisiert|genehmigt|verwendet|benutzt)\b|\bnoch nicht\b|\bnoch keine?\b|"
    r"\bnicht (?:länger|mehr) .{0,40}warten\b|\bkeine (?:antwort|reaktion)\b|"
    r"\bvergessen sie\b.{0,40}\bnicht\b",
    "fr": r"\bn'oubliez pas\b|\bpas (?:reçu|arrivé|livré|content|satisfait|commandé|autorisé)\b|"
    r"\bjamais (?:reçu|arrivé|livré)\b|\btoujours pas\b|\bpas encore\b|\bn'ai (?:pas|jamais) "
    r"(?:reçu|commandé|autorisé)\b|\bn'est (?:pas|jamais) (?:arrivé|livré)\b|\bne fonctionne pas\b",
    "es": r"\bno (?:olvide|olviden|he recibido|recib[ií]|lleg[oó]|ha llegado|estoy content\w*|"
    r"estoy satisfech\w*|funciona|ped[ií]|autoric[eé])\b|\btodav[ií]a no\b|\ba[uú]n no\b|"
    r"\bnunca (?:lleg[oó]|recib[ií])\b",
}
# Keeping the rest of an order is a partial refund, not the request taken back ("refund the
# missing case, I'll keep the rest"): taken out of a clause like a harmless negation.
PARTIAL_KEEP = {
    "en": r"\b(?:i(?:'ll| will| am going to|'m going to) |decided to |i'd rather |i(?:'m| am) )?"
    r"keep(?:ing)? (?:the rest|the others?|the other (?:one|items?|\w+)|everything else|the "
    r"remaining \w+)\b",
    "de": r"\b(?:den rest|die anderen|das andere) behalte ich\b|\bbehalte (?:ich )?(?:den rest|"
    r"die anderen|das andere)\b",
    "fr": r"\bje garde (?:le reste|les autres|l'autre)\b",
    "es": r"\bme quedo con (?:el resto|lo dem[aá]s|los dem[aá]s|las dem[aá]s|el otro|la otra|"
    r"los otros|las otras)\b",
}
# Certain withdrawals: the request taken back, whatever else the clause says.
WITHDRAW = {
    "en": r"\bnever ?mind\b|\bforget (?:about )?(?:it|the refund|my refund|the request|my request|"
    r"that|this)\b|\bdisregard\b|\bplease ignore (?:my|this|the|that|previous)\b|\bwithdraw\w*|"
    r"\bcancel (?:my|the|this) (?:refund|request|claim)\b|\b(?:refund|request) (?:is |can be |has "
    r"been )?cancel+ed\b|\bcall(?:ing)? (?:it )?off\b|\b(?:i(?:'ll| will| am going to|'m going to) "
    r"|decided to |i'd rather )keep (?:it|them|the)\b|\bi(?:'m| am) keeping\b|"
    r"(?<!not )(?<!n't )(?<!never )\b(?:issue|problem|matter|it|this|everything|all)(?:'s| is| has "
    r"been| was| got| have been)? (?:now |already |all )?(?:resolved|sorted(?: out)?|fixed|"
    r"solved|settled|taken care of)\b|\bno (?:refund|reimbursement) (?:is )?(?:needed|necessary|"
    r"required)\b|\bno need (?:for (?:a|the|my) refund|to refund)\b|\b(?:don't|do not|no need "
    r"to) bother\b|\b(?:arrived|turned up|showed up|came) (?:\w+ )?after all\b",
    "de": r"\bhat sich erledigt\b|\bist erledigt\b|\berledigt sich\b|\bvergessen sie\b|"
    r"\bvergiss es\b|\bignorieren sie\b|\bziehe\b.{0,60}\bzurück\b|\bzurückziehen\b|"
    r"\bstornier\w*\b.{0,40}(?:anfrage|antrag|erstattung|anliegen)\w*\b|\bbehalte\b|"
    r"\b(?:problem|anliegen|sache) (?:ist |wurde |hat sich )?(?:gelöst|erledigt|behoben)\b|"
    r"\bnicht (?:mehr )?(?:nötig|notwendig|erforderlich)\b|\bbitte nicht\b.{0,30}"
    r"(?:erstatten|zurück)|\bkeine (?:rück)?erstattung\w* (?:mehr|nötig)\b",
    "fr": r"\bannule[zr]?\b.{0,30}\b(?:demande|réclamation|remboursement)\b|\bdemande (?:est )?"
    r"annulée\b|\boubliez\b|\blaissez tomber\b|\bje (?:la |le |les )?garde\b|\bretire\w*\b.{0,20}"
    r"\bdemande\b|\b(?:problème|souci) (?:est |a été )?(?:résolu|réglé)\b|\bc'est (?:résolu|réglé)"
    r"\b|\bplus besoin\b|\bpas besoin\b|\bne (?:tenez|prenez) pas compte\b|\bignorez\b|"
    r"\bn'ai plus besoin\b|\bne (?:veux|souhaite|voudrais) (?:plus|pas)\b.{0,40}\brembours|"
    r"\bne (?:me )?rembours\w* pas\b",
    "es": r"\bolv[ií]de(?:n|lo|nlo)?\b|\bcancel(?:e|en|ar|o)\b.{0,30}\b(?:solicitud|petici[oó]n|"
    r"reclamaci[oó]n|devoluci[oó]n|reembolso)\b|\bretiro\b.{0,20}\b(?:solicitud|petici[oó]n|"
    r"reclamaci[oó]n)\b|\bme lo quedo\b|\bme quedo con\b|\b(?:problema|asunto) (?:ya )?(?:est[aá] "
    r"|fue |qued[oó] )?(?:resuelto|solucionado|arreglado)\b|\bya est[aá] resuelto\b|"
    r"\bno hace falta\b|\bno es necesario\b|\bignore(?:n)? (?:mi|este|el)\b|\bya no (?:necesito|"
    r"quiero|hace falta)\b|\bno (?:necesito|quiero|deseo|requiero)\b.{0,30}\b(?:reembolso|"
    r"devoluci[oó]n)\b|\bno (?:me )?(?:reembolsen|devuelvan|hagan el reembolso)\b",
}
# A request verb negated in English ("please don't refund", "I don't want the refund").
_NEGATED_REQUEST_EN = (
    r"(?:n't|\bnot|\bno longer|\bnever)\s+(?:\w+\s+){0,2}?(?:want|need|require|expect|wish for)"
    r"\s+(?:a |the |my |any |that |this )?(?:refund|money(?: back)?|reimbursement)\b|"
    r"(?:n't|\bnot)\s+(?:refund|reimburse|process (?:the|my|a) refund|issue (?:a|the) refund)\b|"
    r"\b(?:refund|reimbursement) (?:is |isn't |is not )?(?:no longer|not) (?:needed|necessary|"
    r"required|wanted)\b|\bno longer (?:need|want)\b"
)
_DE_NEGATED_REQUEST = (
    r"\b(?:brauche|benötige|möchte|will|wünsche|verlange)\b.*\b(?:nicht|keine?n?)\b"
)

CHARGEBACK = {
    # A chargeback by name; disputing or contesting the charge or payment itself; a dispute
    # filed or opened; a dispute or a reversal with a bank, card or payment provider.
    "en": r"\bcharge ?backs?\b|\bcharged back\b|\b(?:dispute|disputed|disputing|contest|contested|"
    r"contesting)\s+(?:(?:the|this|that|these|those|my|a|your|its)\s+)?(?:\w+\s+)?(?:charges?|"
    r"payments?|transactions?|debits?)\b|\b(?:file|filed|filing|open|opened|opening|raise|raised|"
    r"start|started|lodge|lodged|submit|submitted)\s+(?:a\s+)?(?:formal\s+)?dispute\b|"
    r"\b(?:dispute|contest)\w*\b.{0,60}\b(?:bank|card|issuer|paypal|visa|mastercard|amex|"
    r"american express)\b|\b(?:bank|card issuer|credit card company|card company|issuer|paypal)"
    r"\b.{0,60}\b(?:disput\w*|contest\w*|revers\w*|charge ?back|claw\w* back)\b",
    "de": r"\brückbuchung\w*|\brücklastschrift\w*|\bbank\b.{0,40}\b(?:zurückbuchen|zurückholen|"
    r"widersprechen|reklamieren)\b|\blastschrift\b.{0,30}\b(?:zurückgeben|widerrufen|"
    r"widersprechen)\b",
    "fr": r"\brétrofacturation\b|\bcontestation bancaire\b|\bcontest\w*\b.{0,40}\b(?:auprès de|"
    r"avec) (?:ma|la) banque\b|\bfaire opposition\b|\bopposition bancaire\b",
    "es": r"\bcontracargo\w*|\b(?:disputa|disputar|reclamar|reclamaci[oó]n)\b.{0,40}\b(?:con|ante"
    r"|a) (?:mi|el) banco\b|\bdesconocer el cargo\b",
}
LEGAL = {
    "en": r"\blawyers?\b|\battorneys?\b(?! general)|\bsolicitors?\b|\bsue (?:you|your|the|them)\b|"
    r"\bi(?:'ll| will)? sue\b|\bsuing\b|\blawsuit\b|\blegal (?:action|proceedings|steps)\b|"
    r"\bcourt\b|\blitigation\b|\bclass action\b",
    "de": r"\b(?:rechts)?anw[aä]lt\w*|\bklage\b|\bverklagen\b|\bverklage\b|\bgericht\w*|"
    r"\b(?:rechtliche|juristische) schritte\b",
    "fr": r"\bavocats?\b|\bpoursuites?\b|\bpoursuivre\b|\btribunal\b|\baction en justice\b|"
    r"\bprocès\b|\bmise en demeure\b",
    "es": r"\babogad\w*|\bdemanda(?:r|ré|remos)?\b|\bdenunciar\b|\btribunal\w*|\bjuzgado\b|"
    r"\bacci(?:ón|ones) legal(?:es)?\b|\bprocedimiento judicial\b",
}
REGULATOR = {
    "en": r"\bcfpb\b|\bftc\b|\bconsumer (?:protection|financial protection|affairs|rights) "
    r"(?:agency|bureau|office|authority|board)\b|\bconsumer protection\b|\bombudsman\b|"
    r"\bbetter business bureau\b|\btrading standards\b|\battorney general\b|\bregulator\b|"
    r"\breport (?:you|this|your company|it) to\b|\b(?:file|lodge) a complaint with\b",
    "de": r"\bbafin\b|\bverbraucherzentrale\b|\bschlichtungsstelle\b|\bombudsmann\b|"
    r"\baufsichtsbehörde\b|\bbundesnetzagentur\b",
    "fr": r"\bdgccrf\b|\bmédiateur\b|\bufc[- ]que choisir\b|\bprotection des consommateurs\b|"
    r"\bsignaler à\b",
    "es": r"\bocu\b|\bfacua\b|\bomic\b|\b(?:oficina|autoridad|instituto|direcci[oó]n) (?:general )?"
    r"de consumo\b|\bdefensor del (?:consumidor|cliente|pueblo)\b",
}
FRAUD = {
    "en": r"\bfraud\w*|\bunauthori[sz]ed\b|\bnot authori[sz]ed\b|\b(?:didn't|did not|never) "
    r"authori[sz]e\b|\bunrecogni[sz]ed (?:charge|transaction|payment)\b|\b(?:don't|do not) "
    r"recogni[sz]e (?:this|the|that) (?:charge|transaction|payment)\b|\bstolen card\b|\bcard "
    r"(?:was |got |has been )?stolen\b|\bsomeone (?:else )?used my card\b|\b(?:account|card) "
    r"(?:was |got |has been )?(?:hacked|compromised)\b|\bidentity theft\b|\bscam\w*",
    "de": r"\bbetrug\w*|\bbetrüg\w*|\bnicht autorisiert\b|\bunautorisiert\b|\bnicht genehmigt\b|"
    r"\bkarte\b.{0,20}\bgestohlen\b|\bgestohlene karte\b|\bgehackt\b|\bidentitätsdiebstahl\b",
    "fr": r"\bfraud\w*|\bescroquerie\b|\barnaque\b|\bnon autorisé\w*|\bpas autorisé\b|\bcarte "
    r"(?:a été )?volée\b|\bpiraté\w*|\busurpation d'identité\b",
    "es": r"\bfraude\w*|\bestafa\w*|\bno autorizad\w*|\bsin autorizaci[oó]n\b|\btarjeta robada\b|"
    r"\bme robaron la tarjeta\b|\bhackead\w*|\bsuplantaci[oó]n de identidad\b",
}

_REFUND = _union(*REFUND.values())
_ASK = _union(*ASK.values())
_IMPERATIVE = _union(*IMPERATIVE.values())
_YOU_CAN = _union(*YOU_CAN.values())
_INFO = _union(*INFO.values())
_PLEASE_MAY_I = _union(*PLEASE_MAY_I.values())
_GO_AHEAD = _union(*GO_AHEAD.values())
# What still makes a polite first-person ask a question about prospects or process.
_STILL_INFO = re.compile(
    r"\b(?:is it possible|how|when|whether|eligible|entitled|would i|wie|wann|ob|combien|"
    r"quand|comment|cu[aá]nto|cu[aá]ndo|c[oó]mo)\b",
    re.IGNORECASE,
)
_CONDITION = _union(*CONDITION.values())
_POLITE = _union(*POLITE_CONDITION.values())
_NEGATION = _union(*NEGATION.values())
_HARMLESS = _union(*HARMLESS_NEGATION.values(), *PARTIAL_KEEP.values())
_WITHDRAW = _union(*WITHDRAW.values(), _NEGATED_REQUEST_EN)
_DE_NEGATED = re.compile(_DE_NEGATED_REQUEST, re.IGNORECASE)
_DISPUTES: tuple[tuple[DisputeKind, re.Pattern[str]], ...] = (
    ("chargeback", _union(*CHARGEBACK.values())),
    ("regulator", _union(*REGULATOR.values())),
    ("legal", _union(*LEGAL.values())),
    ("fraud", _union(*FRAUD.values())),
)


def _normal(text: str) -> str:
    """Curly apostrophes straightened, spaces collapsed (the lexicons use ' and one space)."""
    return re.sub(r"\s+", " ", text.replace("\u2019", "'").replace("\u00a0", " ")).strip()


def _sentence_kind(sentence: str) -> IntentKind:
    """What one sentence does about a refund."""
    s = _normal(sentence)
    if not _REFUND.search(s):
        return "none"
    if _withdrawn_in(s) is not None:
        return "negated"
    question = s.rstrip().endswith("?") or s.lstrip().startswith("¿")
    polite_ask = bool(_PLEASE_MAY_I.search(s)) and not _STILL_INFO.search(s)
    if question and _INFO.search(s) and not polite_ask:
        return "question"
    if _CONDITION.search(_POLITE.sub(" ", s)):
        return "conditional"
    if question:
        asks_us = _YOU_CAN.search(s) or _GO_AHEAD.search(s)
        return "request" if asks_us or polite_ask else "question"
    # "I want to know whether ...", "please tell me how long ...": a question in words.
    if _INFO.search(s) and not _IMPERATIVE.search(s) and _ASKS_TO_KNOW.search(s):
        return "question"
    if _ASK.search(s) or _YOU_CAN.search(s) or _GO_AHEAD.search(s):
        return "request"
    if any(_IMPERATIVE.search(c.strip()) for c in clauses(s)):
        return "request"
    return "mention"


_ASKS_TO_KNOW = re.compile(
    r"\b(?:know|ask|tell me|let me know|wonder|wissen|savoir|saber)\b", re.IGNORECASE
)
_ORDER: tuple[IntentKind, ...] = ("negated", "conditional", "question", "mention")


def request_intent(text: str) -> Intent:
    """Whether the text (quoted history dropped) explicitly and unconditionally asks for a
    refund; the deciding sentence as evidence."""
    own = strip_quoted(text)
    found: dict[IntentKind, str] = {}
    for sentence in sentences(own):
        kind = _sentence_kind(sentence)
        if kind == "request":
            return Intent("request", sentence)
        if kind != "none":
            found.setdefault(kind, sentence)
    for kind in _ORDER:
        if kind in found:
            return Intent(kind, found[kind])
    quoted = [s for s in sentences(text) if _sentence_kind(s.lstrip("> ")) == "request"]
    if quoted:
        return Intent("quoted", quoted[0])
    return Intent("none")


def _withdrawn_in(sentence: str) -> Finding | None:
    """A withdrawal in one sentence: a certain cue, or a negation next to a refund word."""
    s = _normal(sentence)
    doubt = False
    for clause in clauses(s):
        plain = _HARMLESS.sub(" ", clause)
        if _WITHDRAW.search(plain):
            return Finding("withdrawal", sentence.strip(), certain=True)
        if _REFUND.search(plain) and _NEGATION.search(plain):
            if _DE_NEGATED.search(plain):
                return Finding("withdrawal", sentence.strip(), certain=True)
            doubt = True
    return Finding("withdrawal", sentence.strip(), certain=False) if doubt else None


def withdrawal(text: str) -> Finding | None:
    """The first sentence (quoted history dropped) that takes a refund request back; certain
    findings win over doubtful ones."""
    doubtful: Finding | None = None
    for sentence in sentences(strip_quoted(text)):
        found = _withdrawn_in(sentence)
        if found is not None and found.certain:
            return found
        doubtful = doubtful or found
    return doubtful


def dispute(text: str) -> Finding | None:
    """The first sentence (quoted history dropped) that mentions a chargeback, legal action,
    a regulator or fraud; `certain=False` when the mention is negated."""
    for sentence in sentences(strip_quoted(text)):
        s = _normal(sentence)
        for kind, pattern in _DISPUTES:
            match = pattern.search(s)
            if match is None:
                continue
            before = s[max(0, match.start() - 40) : match.start()]
            negated = bool(_NEGATION.search(before)) and kind != "fraud"
            return Finding(kind, sentence.strip(), certain=not negated)
    return None


def mentions_refund(text: str) -> bool:
    """Whether the text (quoted history dropped) speaks of a refund at all, in any of the
    four languages."""
    return bool(_REFUND.search(_normal(strip_quoted(text))))


# --- the money back, as a whole ----------------------------------------------------------------

# Asking for the money back in full, with no amount ("I want my money back", "mein Geld
# zurück", "remboursement intégral", "reembolso total").
MONEY_BACK = {
    "en": r"\bmoney back\b|\bfull refund\b|\bin full\b|\b(?:the )?(?:full|whole|entire) "
    r"(?:amount|sum|charge|payment)\b",
    "de": r"\bgeld zurück\b|\bmein geld\b|\b(?:gesamten|vollen|ganzen) betrag\b|\bvollständig\w*|"
    r"\bin voller höhe\b",
    "fr": r"\bmon argent\b|\bremboursement (?:total|intégral|complet)\b|\bintégralement\b|"
    r"\ben totalité\b|\bla totalité\b",
    "es": r"\bmi dinero\b|\breembolso (?:total|completo|[ií]ntegro)\b|\bla totalidad\b|"
    r"\bel importe (?:total|completo)\b|\b[ií]ntegramente\b",
}
# Asking for what is left of the charge ("what's left", "reembólsenme lo que queda").
REMAINDER = {
    "en": r"\bwhat(?:'s| is) left\b|\bthe remainder\b|"
    r"\b(?:the )?remaining (?:amount|sum|balance)\b",
    "de": r"\brestlichen betrag\b|\brestbetrag\b|\bwas übrig (?:ist|bleibt)\b",
    "fr": r"\bce qui reste\b|\ble montant restant\b|\ble solde\b",
    "es": r"\blo que queda\b|\blo restante\b|\bel importe restante\b",
}
# A part of the charge ("one of my two seats", "my money back for the cancelled seat"): then
# the whole charge is not what is asked.
PART = {
    "en": r"\bone of\b|\bpart(?:ial\w*)?\b|\bsome of\b|\bfor (?:the|that|this|one|a|an|each|my) "
    r"(?!(?:charge|payment|order|purchase|subscription|renewal|booking|whole|full|entire)\b)\w+",
    "de": r"\bteil\w*|\beine[ns]? (?:der|von)\b|\bfür (?:den|die|das|einen|eine|ein|diesen|diese) "
    r"(?!(?:bestellung|zahlung|abbuchung|abo\w*|kauf|buchung|betrag)\b)\w+",
    "fr": r"\bpartie\b|\bpartiel\w*|\bl'une? des\b|\bpour (?:le|la|les|l'|un|une|ce|cette) ?"
    r"(?!(?:commande|paiement|prélèvement|abonnement|achat|réservation|montant)\b)\w+",
    "es": r"\bparte\b|\bparcial\w*|\buno de\b|\buna de\b|\bpor (?:el|la|los|las|un|una|ese|esa|"
    r"este|esta) (?!(?:pedido|cargo|pago|cobro|suscripci[oó]n|compra|reserva|importe)\b)\w+",
}
_MONEY_BACK = _union(*MONEY_BACK.values())
_REMAINDER = _union(*REMAINDER.values())
_PART = _union(*PART.values(), *PARTIAL_KEEP.values())


def money_back(text: str) -> str | None:
    """The request sentence (quoted history dropped) that asks, with no amount, for the
    charge's money back or for what is left of it; None when a part is named instead. "What
    is left" may follow an earlier partial refund told in another sentence; "my money back"
    holds only when no sentence of the text names a part ("I cancelled one of my two seats")."""
    own = sentences(strip_quoted(text))
    asks = [_normal(s) for s in own if _sentence_kind(s) == "request"]
    if any(_PART.search(s) for s in asks):
        return None
    rest = next((s for s in asks if _REMAINDER.search(s)), None)
    if rest is not None:
        return rest
    if any(_PART.search(_normal(s)) for s in own):
        return None
    return next((s for s in asks if _MONEY_BACK.search(s)), None)
