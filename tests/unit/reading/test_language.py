"""app/reading/language.py: requests, withdrawals and disputes in English, German, French and
Spanish; quoted history is never judged."""

from __future__ import annotations

import pytest

from app.reading.language import (
    LANGUAGES,
    dispute,
    money_back,
    request_intent,
    sentences,
    strip_quoted,
    withdrawal,
)

# --- requests --------------------------------------------------------------------------------

REQUESTS = {
    "en": [
        "Please refund $20 for ch_1001.",
        "I'd like a refund.",
        "Refund me.",
        "Can you please refund $25.00 on charge ch_1001?",
        "Could you refund the $40 for ch_1002?",
        "I want my money back for charge ch_1003.",
        "I would like a refund of $90.00 for charge ch_1003.",
        "Kindly reimburse the duplicate charge.",
        "I'd like $25.00 back for charge ch_1003.",
        "I need a refund for the broken kettle, please.",
        "Please don't forget my refund.",
        "Can I have a refund please?",
        "Please give me the $30.00 for that seat back on charge ch_1003.",
        "Could I please get a refund of $20.00 for charge ch_1001?",
        "I don't want to wait any longer, refund me now.",
        "Not happy, I want my money back.",
        "I never received it, please refund.",
        "A refund of $20 please, if possible.",
        "I'd like a refund of $15.00 for the missing case, I'll keep the rest.",
        "You can proceed with the refund.",
        "You may go ahead with the refund of $12.00 on ch_1001.",
        "Go ahead with the refund.",
    ],
    "de": [
        "Bitte erstatten Sie 20 € für ch_1001.",
        "Ich möchte eine Rückerstattung.",
        "Können Sie mir bitte 20 € erstatten?",
        "Kann ich bitte mein Geld zurück haben?",
        "Erstatten Sie mir bitte den Betrag, wenn möglich.",
        "Sie können die Erstattung vornehmen.",
        "Sie können mir die 20 € für ch_1001 erstatten.",
    ],
    "fr": [
        "Pouvez-vous me rembourser 20 € pour ch_1001 ?",
        "Puis-je être remboursé de 20 €, s'il vous plaît ?",
        "Je souhaite être remboursé.",
        "Remboursez-moi s'il vous plaît.",
        "Merci de me rembourser la commande.",
        "Vous pouvez procéder au remboursement.",
        "Oui, vous pouvez procéder au remboursement de 12,00 € sur ch_1001.",
        "Vous pouvez me rembourser la commande ?",
        "Procédez au remboursement.",
    ],
    "es": [
        "Por favor, reembolsen 20 € del cargo ch_1001.",
        "Quiero un reembolso.",
        "¿Pueden reembolsarme el cargo ch_1001?",
        "¿Puedo tener un reembolso del cargo ch_1001, por favor?",
        "Necesito la devolución de mi dinero.",
        "Por favor, reembólsenme los 18,75 € del cargo ch_1001.",
        "Reembólseme el cargo ch_1001, por favor.",
        "Pueden proceder al reembolso.",
        "Proceda con el reembolso del cargo ch_1001.",
    ],
}

NOT_REQUESTS = {
    "en": [
        ("Would I get the full amount back if I cancel?", "question"),
        ("How long does a refund take?", "question"),
        ("Is it possible to get a refund?", "question"),
        ("Could I get a refund?", "question"),
        ("Can I get a refund if I cancel now?", "question"),
        ("Can I get a refund?", "question"),
        ("How can I please get a refund?", "question"),
        ("Could you tell me if I can get a refund?", "question"),
        ("I want to know how refunds work.", "question"),
        ("I was charged twice, this is ridiculous.", "none"),
        ("If the parcel doesn't arrive, I want a refund.", "conditional"),
        ("I might ask for a refund.", "conditional"),
        ("I was promised a refund last week.", "mention"),
        ("Please don't refund the charge.", "negated"),
        ("Unless it arrives by Friday I'll ask for a refund.", "conditional"),
        ("You can see I was promised a refund.", "mention"),
        ("You can proceed with the refund if it does not arrive.", "conditional"),
    ],
    "de": [
        ("Bekomme ich mein Geld zurück?", "question"),
        ("Wie lange dauert eine Rückerstattung?", "question"),
        ("Falls das Paket nicht ankommt, möchte ich eine Erstattung.", "conditional"),
        ("Ich brauche die Erstattung nicht mehr.", "negated"),
        ("Sie können die Erstattung vornehmen, falls das Paket nicht kommt.", "conditional"),
    ],
    "fr": [
        ("Est-il possible d'obtenir un remboursement ?", "question"),
        ("Combien de temps prend un remboursement ?", "question"),
        ("Si le colis n'arrive pas, je veux être remboursé.", "conditional"),
        ("Je n'ai plus besoin du remboursement.", "negated"),
        ("Si le colis n'arrive pas, vous pouvez procéder au remboursement.", "conditional"),
        ("Vous pouvez voir que le remboursement a été promis.", "mention"),
    ],
    "es": [
        ("¿Es posible obtener un reembolso?", "question"),
        ("¿Cuánto tarda un reembolso?", "question"),
        ("Si no llega el paquete, quiero un reembolso.", "conditional"),
        ("Ya no necesito el reembolso.", "negated"),
    ],
}


def test_the_four_languages_are_declared() -> None:
    assert LANGUAGES == ("en", "de", "fr", "es")


@pytest.mark.parametrize(
    ("lang", "text"), [(lang, t) for lang, texts in REQUESTS.items() for t in texts]
)
def test_explicit_requests_are_requests(lang: str, text: str) -> None:
    intent = request_intent(f"Hello,\n{text}\nThanks")
    assert intent.requested, (lang, intent)
    # The evidence is the sentence that asks, not the greeting around it
    assert intent.sentence == text


@pytest.mark.parametrize(
    ("lang", "text", "kind"),
    [(lang, t, k) for lang, cases in NOT_REQUESTS.items() for t, k in cases],
)
def test_questions_conditions_complaints_and_negations_are_not_requests(
    lang: str, text: str, kind: str
) -> None:
    intent = request_intent(text)
    assert not intent.requested
    assert intent.kind == kind, (lang, intent)
    if kind != "none":
        assert intent.sentence == text


def test_a_request_only_in_quoted_history_is_not_a_request() -> None:
    text = (
        "Thanks for your help, all good now.\n\n"
        "On Mon, 3 Mar 2025 at 10:02, Alice <alice@example.com> wrote:\n"
        "> Please refund $20 for ch_1001.\n"
    )
    intent = request_intent(text)
    assert not intent.requested and intent.kind == "quoted"
    assert "Please refund $20" in intent.sentence


# --- quoted history --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "quoted",
    [
        "> Please refund $20 for ch_1001.",
        "On Mon, 3 Mar 2025, Alice Adams <alice@example.com> wrote:\nPlease refund $20.",
        "On Mon, 3 Mar 2025 at 10:02, Alice Adams <alice@example.com>\nwrote:\nPlease refund.",
        "Am 03.03.2025 um 10:02 schrieb Alice Adams <alice@example.com>:\nBitte erstatten.",
        "Le lun. 3 mars 2025 à 10:02, Alice <alice@example.com> a écrit :\nRemboursez-moi.",
        "El lun, 3 mar 2025 a las 10:02, Alice (<alice@example.com>) escribió:\nReembolsen.",
        "-----Original Message-----\nPlease refund $20.",
        "---------- Forwarded message ---------\nFrom: Alice\nPlease refund $20.",
        "From: Alice Adams <alice@example.com>\nSent: Monday, March 3, 2025\nTo: Support\n"
        "Please refund $20.",
        "Von: Alice Adams\nGesendet: Montag, 3. März 2025\nAn: Support\nBitte erstatten.",
        "De : Alice\nEnvoyé : lundi 3 mars 2025\nÀ : Support\nRemboursez-moi.",
        "De: Alice\nEnviado: lunes, 3 de marzo de 2025\nPara: Soporte\nReembolsen.",
    ],
)
def test_quoted_history_is_dropped(quoted: str) -> None:
    text = f"My own words.\n\n{quoted}"
    assert strip_quoted(text) == "My own words."


def test_sentences_keep_amounts_whole() -> None:
    assert sentences("Hi. Please refund $25.00 for ch_1001. Thanks!\nAlice") == [
        "Hi.",
        "Please refund $25.00 for ch_1001.",
        "Thanks!",
        "Alice",
    ]


# --- withdrawals -----------------------------------------------------------------------------

WITHDRAWALS = {
    "en": [
        "I no longer need the refund.",
        "Please don't refund.",
        "Don't bother with the refund.",
        "Please cancel my refund request.",
        "Forget the refund, thanks.",
        "It arrived this morning, I'll keep it.",
        "The issue is resolved, no refund needed.",
        "Never mind, my bank already reversed the second charge.",
        "It's all sorted now, thanks.",
        "Please disregard my request, I am keeping the product after all.",
        "I withdraw my request.",
    ],
    "de": [
        "Ich brauche die Erstattung nicht mehr.",
        "Bitte nicht erstatten.",
        "Hat sich erledigt, danke.",
        "Vergessen Sie die Erstattung.",
        "Bitte stornieren Sie meine Erstattungsanfrage, das Paket ist doch angekommen.",
    ],
    "fr": [
        "Je n'ai plus besoin du remboursement.",
        "Annulez ma demande, merci.",
        "Laissez tomber, je le garde.",
        "Le problème est résolu.",
    ],
    "es": [
        "Ya no necesito el reembolso.",
        "No hace falta, gracias.",
        "Cancelen mi solicitud de reembolso.",
        "Me lo quedo, olvídenlo.",
    ],
}

NOT_WITHDRAWALS = {
    "en": [
        "I don't want to wait any longer, refund me now.",
        "Please don't forget my refund.",
        "Not happy, I want my money back.",
        "I never received it, please refund.",
        "I still haven't received my refund.",
        "Thanks, waiting for the refund.",
        "The issue is not resolved, I want my refund.",
        "The parcel didn't arrive, so please refund me.",
        "Still no refund yet, please hurry.",
        "No need to call me back, an email confirmation is fine.",
        "Please refund $15.00 for the missing case, I'll keep the rest.",
        "Refund the broken mug please, I'm keeping the other items.",
    ],
    "de": [
        "Ich habe das Paket nicht erhalten, bitte erstatten.",
        "Bitte vergessen Sie meine Erstattung nicht.",
        "Die Erstattung ist noch nicht da.",
        "Bitte erstatten Sie die defekte Tasse, den Rest behalte ich.",
    ],
    "fr": [
        "N'oubliez pas mon remboursement.",
        "Je n'ai pas reçu le colis, remboursez-moi.",
        "Toujours pas de remboursement.",
        "Remboursez-moi la tasse cassée, je garde le reste.",
    ],
    "es": [
        "No olviden mi reembolso.",
        "No he recibido el paquete, quiero un reembolso.",
        "Todavía no tengo el reembolso.",
        "Reembólsenme la taza rota, me quedo con el resto.",
    ],
}


@pytest.mark.parametrize(
    ("lang", "text"), [(lang, t) for lang, texts in WITHDRAWALS.items() for t in texts]
)
def test_withdrawals_are_found_with_their_sentence(lang: str, text: str) -> None:
    found = withdrawal(f"Hello again. {text}")
    assert found is not None and found.certain, (lang, found)
    assert found.sentence == text
    assert not request_intent(text).requested


@pytest.mark.parametrize(
    ("lang", "text"), [(lang, t) for lang, texts in NOT_WITHDRAWALS.items() for t in texts]
)
def test_reminders_and_complaints_are_not_withdrawals(lang: str, text: str) -> None:
    assert withdrawal(text) is None, lang


def test_a_negation_the_rules_cannot_read_is_an_uncertain_withdrawal() -> None:
    found = withdrawal("I'm not sure the refund is what I want anymore.")
    assert found is not None and not found.certain
    assert found.sentence == "I'm not sure the refund is what I want anymore."


def test_a_withdrawal_in_quoted_history_is_not_one() -> None:
    assert withdrawal("Please refund $20.\n\n> I no longer need the refund.") is None


# --- disputes --------------------------------------------------------------------------------

DISPUTES = {
    "en": [
        ("I will file a chargeback if this isn't fixed.", "chargeback"),
        ("I have opened a dispute with my bank.", "chargeback"),
        ("My bank said I should dispute the charge.", "chargeback"),
        ("I'm going to file a dispute with PayPal.", "chargeback"),
        ("I have disputed the charge with Visa.", "chargeback"),
        ("I'll contact my card issuer to reverse the payment.", "chargeback"),
        ("My lawyer will be in touch.", "legal"),
        ("I will sue you for this.", "legal"),
        ("Expect legal action.", "legal"),
        ("I'll take this to court.", "legal"),
        ("I am reporting you to the CFPB.", "regulator"),
        ("I'll complain to the FTC and the consumer protection agency.", "regulator"),
        ("I will report you to the ombudsman.", "regulator"),
        ("This is fraud.", "fraud"),
        ("This is an unauthorized charge.", "fraud"),
        ("My card was stolen and someone used my card.", "fraud"),
        ("My account was hacked.", "fraud"),
    ],
    "de": [
        ("Ich mache eine Rückbuchung.", "chargeback"),
        ("Mein Anwalt meldet sich.", "legal"),
        ("Ich gehe zur Verbraucherzentrale.", "regulator"),
        ("Das ist Betrug.", "fraud"),
        ("Die Abbuchung war nicht autorisiert.", "fraud"),
    ],
    "fr": [
        ("Je vais faire une rétrofacturation.", "chargeback"),
        ("Je lance une contestation bancaire.", "chargeback"),
        ("Mon avocat vous contactera.", "legal"),
        ("Je vais saisir la DGCCRF.", "regulator"),
        ("C'est une fraude.", "fraud"),
    ],
    "es": [
        ("Voy a pedir un contracargo.", "chargeback"),
        ("Mi abogado les contactará.", "legal"),
        ("Pondré una reclamación en la OCU.", "regulator"),
        ("Es un cargo no autorizado.", "fraud"),
    ],
}

NOT_DISPUTES = {
    "en": [
        "No dispute here, just a duplicate charge.",
        "There is no dispute about the amount.",
        "Please don't make me go to my bank.",
        "Please refund $20 for ch_1001.",
        "Hi, this is Sue from accounting.",
        "I was charged twice, this is ridiculous.",
        "The product never arrived.",
        "I disputed the size with your team, it was too small.",
        "Thanks for the quick help.",
        "My bank statement shows two charges.",
    ],
    "de": ["Bitte erstatten Sie 20 €.", "Die Bank zeigt zwei Abbuchungen.", "Danke!"],
    "fr": ["Remboursez-moi s'il vous plaît.", "Ma banque montre deux débits.", "Merci."],
    "es": ["Quiero un reembolso.", "Mi banco muestra dos cargos.", "Gracias."],
}


@pytest.mark.parametrize(
    ("lang", "text", "kind"),
    [(lang, t, k) for lang, cases in DISPUTES.items() for t, k in cases],
)
def test_disputes_are_found_with_kind_and_sentence(lang: str, text: str, kind: str) -> None:
    found = dispute(f"Hello. {text} Regards")
    assert found is not None, lang
    assert found.kind == kind and found.sentence == text and found.certain


@pytest.mark.parametrize(
    ("lang", "text"), [(lang, t) for lang, texts in NOT_DISPUTES.items() for t in texts]
)
def test_ordinary_words_are_not_disputes(lang: str, text: str) -> None:
    assert dispute(text) is None, lang


def test_a_chargeback_the_customer_says_they_will_not_file_still_goes_to_a_human() -> None:
    found = dispute("I don't want to file a chargeback, just refund me.")
    assert found is not None and found.kind == "chargeback" and not found.certain


def test_a_dispute_in_quoted_history_is_not_judged() -> None:
    assert dispute("Thanks!\n\nOn Tue, Bob <b@example.com> wrote:\n> I will sue you.") is None


# --- the money back, as a whole ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "This is the third time I'm writing. I want my money back for ch_1001. Sort it out.",
        "Ya me devolvieron una parte del pedido. Por favor, reembólsenme lo que queda del cargo "
        "ch_1001.",
        "You refunded part of ch_1001 already. Please refund what is left.",
        "Ich möchte mein Geld zurück für ch_1001.",
        "Je veux un remboursement intégral de ch_1001.",
        "Quiero un reembolso total del cargo ch_1001.",
    ],
)
def test_the_money_back_asked_as_a_whole(text: str) -> None:
    assert money_back(f"Refund\n{text}") is not None


@pytest.mark.parametrize(
    "text",
    [
        "Please refund charge ch_1001, the product broke after a day.",
        "I cancelled one of my two seats (ch_1001). I want my money back for the cancelled seat.",
        "I cancelled one of my two seats (ch_1001). I want my money back.",
        "I want my money back for ch_1001, I'll keep the rest.",
        "Would I get my money back for ch_1001?",
        "If it doesn't arrive I want my money back for ch_1001.",
        "Remboursez-moi pour la chemise, ch_1001.",
        "Thanks.\n\nOn Mon, 16 Nov 2026, Alice <a@example.com> wrote:\n> I want my money back.",
    ],
)
def test_a_part_a_question_or_a_plain_refund_is_not_the_money_back_as_a_whole(text: str) -> None:
    assert money_back(text) is None
