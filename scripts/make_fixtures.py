#!/usr/bin/env python3
"""Generate the offline test fixtures for bwb.

What it makes
-------------
* tests/fixtures/hub/   -- a Hugging Face hub cache (the layout read by the Rust
  crate hf-hub 0.4: ``Cache::new(dir).repo(Repo::with_revision(id,
  RepoType::Dataset, rev)).get(path)``) holding tiny, hand-made stand-ins for
  the six task datasets and the context benchmarks, in the same raw file format, path-in-repo, column names, Arrow
  types and ``huggingface`` schema metadata as the real files:

      datasets--<org>--<name>/refs/<revision>          40-hex commit, no newline
      datasets--<org>--<name>/snapshots/<commit>/<path-in-repo>   plain files

  PolyAI/banking77                 refs/convert/parquet  default/{train,test}/0000.parquet
  theatticusproject/cuad-qa        refs/convert/parquet  default/train/000{0,1,2}.parquet,
                                                         default/test/0000.parquet
  coastalcph/lex_glue (ledgar)     main                  ledgar/{train,validation,test}-00000-of-00001.parquet
  takala/financial_phrasebank      refs/convert/parquet  sentences_allagree/train/0000.parquet
  openlifescienceai/medmcqa        main                  data/{train,validation,test}-00000-of-00001.parquet
  google-research-datasets/mbpp    main                  full/{train,test,validation,prompt}-00000-of-00001.parquet

  Context benchmarks (eval-only, configs/datasets/), a handful of rows each:
  hotpotqa/hotpot_qa               main                  distractor/validation-00000-of-00001.parquet
  THUDM/LongBench                  refs/convert/parquet  {narrativeqa,qasper,multifieldqa_en,2wikimqa,qmsum}/test/0000.parquet
  dmis-lab/ETHIC                   refs/convert/parquet  {Recalling,Summarizing,Organizing,Attributing}/test/0000.parquet
  microsoft/ms_marco               main                  v2.1/validation-00000-of-00001.parquet
  PatronusAI/financebench          main                  financebench_merged.jsonl

* tests/fixtures/broken/banking77_truncated.parquet -- the banking77 train
  fixture cut in half (invalid parquet: no footer).
* tests/fixtures/broken/banking77_bad_rows.parquet  -- valid parquet with the
  banking77 schema, where one row has a null label and one row has label 99
  (out of range for the 77-class ClassLabel).
* tests/fixtures/README.md -- short description of the above.

All rows are invented for these fixtures (no real dataset rows are copied).
The commit hashes are made up: sha1 of the repo id.

How to rerun
------------
    python3 scripts/make_fixtures.py

Needs python3 and pyarrow only; no network. Output is deterministic (for a
given pyarrow version). The script deletes and rewrites tests/fixtures/hub and
tests/fixtures/broken, then checks everything it wrote: every file loads with
pyarrow with the expected schema and row counts, CUAD answer offsets match the
context, and every MBPP row's code passes its asserts when run by python3.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
HUB = FIXTURES / "hub"
BROKEN = FIXTURES / "broken"

# --------------------------------------------------------------------------
# helpers: HF `datasets` feature JSON (as embedded in parquet schema metadata)
# --------------------------------------------------------------------------


def f_value(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


def f_classlabel(names: list[str]) -> dict:
    return {"names": list(names), "_type": "ClassLabel"}


def f_sequence(feature: dict) -> dict:
    return {"feature": feature, "_type": "Sequence"}


def hf_schema(fields: list[tuple[str, pa.DataType, dict]]) -> pa.Schema:
    """Arrow schema + the `huggingface` metadata key that `datasets` writes."""
    features = {name: feat for name, _, feat in fields}
    meta = json.dumps({"info": {"features": features}})
    return pa.schema([pa.field(n, t) for n, t, _ in fields], metadata={b"huggingface": meta.encode()})


def commit_for(repo_id: str) -> str:
    return hashlib.sha1(repo_id.encode("utf-8")).hexdigest()


def repo_dir(repo_id: str) -> Path:
    return HUB / ("datasets--" + repo_id.replace("/", "--"))


def write_ref(repo_id: str, revision: str) -> str:
    commit = commit_for(repo_id)
    ref = repo_dir(repo_id) / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_bytes(commit.encode("ascii"))  # no trailing newline
    return commit


def write_parquet(repo_id: str, path_in_repo: str, schema: pa.Schema, rows: list[dict]) -> Path:
    out = repo_dir(repo_id) / "snapshots" / commit_for(repo_id) / path_in_repo
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, out, compression="snappy")
    return out


def split_rows(rows: list, sizes: list[int]) -> list[list]:
    assert sum(sizes) <= len(rows), (sum(sizes), len(rows))
    out, i = [], 0
    for n in sizes:
        out.append(rows[i : i + n])
        i += n
    return out


# ==========================================================================
# 1. BANKING77  (PolyAI/banking77, refs/convert/parquet, config "default")
# ==========================================================================

BANKING77_REPO = "PolyAI/banking77"
BANKING77_REV = "refs/convert/parquet"

BANKING77_LABELS = [
    "activate_my_card", "age_limit", "apple_pay_or_google_pay", "atm_support", "automatic_top_up",
    "balance_not_updated_after_bank_transfer", "balance_not_updated_after_cheque_or_cash_deposit",
    "beneficiary_not_allowed", "cancel_transfer", "card_about_to_expire", "card_acceptance", "card_arrival",
    "card_delivery_estimate", "card_linking", "card_not_working", "card_payment_fee_charged",
    "card_payment_not_recognised", "card_payment_wrong_exchange_rate", "card_swallowed", "cash_withdrawal_charge",
    "cash_withdrawal_not_recognised", "change_pin", "compromised_card", "contactless_not_working", "country_support",
    "declined_card_payment", "declined_cash_withdrawal", "declined_transfer", "direct_debit_payment_not_recognised",
    "disposable_card_limits", "edit_personal_details", "exchange_charge", "exchange_rate", "exchange_via_app",
    "extra_charge_on_statement", "failed_transfer", "fiat_currency_support", "get_disposable_virtual_card",
    "get_physical_card", "getting_spare_card", "getting_virtual_card", "lost_or_stolen_card", "lost_or_stolen_phone",
    "order_physical_card", "passcode_forgotten", "pending_card_payment", "pending_cash_withdrawal", "pending_top_up",
    "pending_transfer", "pin_blocked", "receiving_money", "Refund_not_showing_up", "request_refund",
    "reverted_card_payment?", "supported_cards_and_currencies", "terminate_account", "top_up_by_bank_transfer_charge",
    "top_up_by_card_charge", "top_up_by_cash_or_cheque", "top_up_failed", "top_up_limits", "top_up_reverted",
    "topping_up_by_card", "transaction_charged_twice", "transfer_fee_charged", "transfer_into_account",
    "transfer_not_received_by_recipient", "transfer_timing", "unable_to_verify_identity", "verify_my_identity",
    "verify_source_of_funds", "verify_top_up", "virtual_card_not_working", "visa_or_mastercard",
    "why_verify_identity", "wrong_amount_of_cash_received", "wrong_exchange_rate_for_cash_withdrawal",
]
assert len(BANKING77_LABELS) == 77

# 8 invented utterances per intent: first 4 -> train, last 4 -> test.
BANKING77_UTTERANCES = {
    "activate_my_card": [
        "How do I get my new card working?",
        "I received my card today, what do I need to do to start using it?",
        "Where in the app can I switch on my card?",
        "My card came but it says inactive, help",
        "Is there a code I have to enter to turn my card on?",
        "Can you walk me through card activation?",
        "What steps are needed before I can pay with the card you sent?",
        "The new card is here, how do I enable it",
    ],
    "age_limit": [
        "How old do I need to be to sign up?",
        "Can my 15 year old have an account?",
        "Is there a minimum age for opening an account with you?",
        "Are teenagers allowed to use this service?",
        "I'm 17, am I able to get a card?",
        "What's the youngest age you accept customers?",
        "Can I open an account for my son who is 12?",
        "Do you have an age requirement?",
    ],
    "card_arrival": [
        "It has been ten days and my card still hasn't shown up.",
        "When should I expect my card in the post?",
        "My card hasn't arrived yet, is something wrong?",
        "I ordered a card two weeks ago and nothing has come",
        "How can I track the card you mailed me?",
        "Still waiting on my card, what's the status?",
        "The card hasn't been delivered, can you check?",
        "Is my card lost in the mail? It's been a while.",
    ],
    "change_pin": [
        "How can I set a different PIN?",
        "I want to update the PIN on my card.",
        "Where do I go to change my PIN number?",
        "Can I pick a new PIN at a cash machine?",
        "Is it possible to reset my PIN to something easier to remember?",
        "I'd like a new PIN please",
        "Can the PIN be changed in the app?",
        "What do I do if I want to modify my card PIN?",
    ],
    "exchange_rate": [
        "What rate do you use when converting euros to pounds?",
        "How is the exchange rate calculated?",
        "Where can I see today's currency conversion rates?",
        "Do you apply the interbank rate for foreign payments?",
        "What exchange rate will I get if I pay in dollars?",
        "Are your exchange rates updated in real time?",
        "How do you decide the rate for currency exchange?",
        "Is the rate the same on weekends?",
    ],
    "lost_or_stolen_card": [
        "Someone stole my wallet with my card in it.",
        "I can't find my card anywhere, what should I do?",
        "My card was taken, please block it.",
        "I think I left my card at a restaurant and it's gone.",
        "How do I report a lost card?",
        "My bag was stolen with the card inside",
        "I've misplaced my card, can you freeze it?",
        "Lost my card on the train this morning",
    ],
    "pending_transfer": [
        "Why is my transfer still showing as pending?",
        "I sent money yesterday and it is still pending.",
        "How long will a transfer stay in pending status?",
        "My payment to my landlord hasn't gone through yet, it says pending",
        "Transfer stuck on pending, what's going on?",
        "Is it normal for a bank transfer to be pending for two days?",
        "The money I sent hasn't left my account, it's pending",
        "When will my pending transfer be completed?",
    ],
    "request_refund": [
        "I'd like to get my money back for an item I returned.",
        "How do I ask for a refund on a purchase?",
        "The merchant agreed to refund me, what happens now?",
        "Can I request a refund through the app?",
        "I want to be refunded for a cancelled order",
        "What's the process for getting a refund?",
        "I need to claim back a payment I made by mistake to a shop",
        "How can I start a refund request?",
    ],
    "terminate_account": [
        "Please close my account.",
        "How do I delete my account permanently?",
        "I don't want to use this service anymore, cancel my account.",
        "What do I need to do to shut down my account?",
        "Can you terminate my account today?",
        "I want to end my membership and close everything",
        "Is there a fee for closing my account?",
        "How can I remove my account and personal data?",
    ],
    "top_up_failed": [
        "My top up didn't work, why?",
        "I tried to add money but it failed.",
        "The top-up was declined, what happened?",
        "Why won't my card let me top up my account?",
        "Top up keeps failing with an error message",
        "I couldn't load money into my account this morning",
        "Adding funds isn't working for me",
        "Why did my attempt to top up get rejected?",
    ],
    "transaction_charged_twice": [
        "I was charged two times for the same coffee.",
        "There are two identical payments on my statement.",
        "A shop took the payment twice, can you fix it?",
        "Why do I see a duplicate charge?",
        "My card was debited twice for one purchase",
        "I paid once but the transaction appears twice",
        "Double charge on my account from yesterday",
        "The same amount was taken from my card twice",
    ],
    "verify_my_identity": [
        "How do I verify who I am?",
        "What documents do you need to confirm my identity?",
        "Where do I upload my ID for verification?",
        "Can I use my driving licence to verify my identity?",
        "I need to complete the identity check, how?",
        "What is required for identity verification?",
        "How long does it take to verify my ID?",
        "Can I verify my identity with a passport photo?",
    ],
}

BANKING77_SCHEMA = hf_schema([
    ("text", pa.string(), f_value("string")),
    ("label", pa.int64(), f_classlabel(BANKING77_LABELS)),
])


def banking77_rows() -> dict[str, list[dict]]:
    train, test = [], []
    for name, utts in BANKING77_UTTERANCES.items():
        label = BANKING77_LABELS.index(name)
        train += [{"text": t, "label": label} for t in utts[:4]]
        test += [{"text": t, "label": label} for t in utts[4:]]
    # the real files are ordered by the source CSV (grouped by intent in train,
    # mixed in test); shuffle test deterministically for realism.
    random.Random(77).shuffle(test)
    return {"train": train, "test": test}


def make_banking77() -> dict:
    write_ref(BANKING77_REPO, BANKING77_REV)
    splits = banking77_rows()
    files = {}
    for split, rows in splits.items():
        path = f"default/{split}/0000.parquet"
        write_parquet(BANKING77_REPO, path, BANKING77_SCHEMA, rows)
        files[path] = len(rows)
    return files


# ==========================================================================
# 2. CUAD  (theatticusproject/cuad-qa, refs/convert/parquet, config "default")
# ==========================================================================

CUAD_REPO = "theatticusproject/cuad-qa"
CUAD_REV = "refs/convert/parquet"

# The 41 CUAD categories, in CUAD order, with short (own-words) descriptions.
CUAD_CATEGORIES = [
    ("Document Name", "The name of the contract"),
    ("Parties", "The two or more parties who signed the contract"),
    ("Agreement Date", "The date of the contract"),
    ("Effective Date", "The date when the contract becomes effective"),
    ("Expiration Date", "On what date will the contract's initial term expire?"),
    ("Renewal Term", "What is the renewal term after the initial term expires?"),
    ("Notice Period To Terminate Renewal", "What is the notice period required to terminate renewal?"),
    ("Governing Law", "Which state/country's law governs the interpretation of the contract?"),
    ("Most Favored Nation", "Is there a clause that gives a party terms at least as favorable as those offered to any third party?"),
    ("Non-Compete", "Is there a restriction on a party's ability to compete with the counterparty?"),
    ("Exclusivity", "Is there an exclusive dealing commitment with the counterparty?"),
    ("No-Solicit Of Customers", "Is a party restricted from soliciting customers of the counterparty?"),
    ("Competitive Restriction Exception", "Are there exceptions or carveouts to the competitive restrictions?"),
    ("No-Solicit Of Employees", "Is there a restriction on soliciting or hiring employees of the counterparty?"),
    ("Non-Disparagement", "Is there a requirement not to disparage the counterparty?"),
    ("Termination For Convenience", "Can a party terminate the contract without cause?"),
    ("Rofr/Rofo/Rofn", "Is there a right of first refusal, first offer or first negotiation?"),
    ("Change Of Control", "Does a change of control of a party give the counterparty a right to terminate or consent?"),
    ("Anti-Assignment", "Is consent or notice required if the contract is assigned to a third party?"),
    ("Revenue/Profit Sharing", "Is one party required to share revenue or profit with the counterparty?"),
    ("Price Restrictions", "Is there a restriction on the ability of a party to raise or reduce prices?"),
    ("Minimum Commitment", "Is there a minimum order size or minimum amount to be purchased?"),
    ("Volume Restriction", "Is there a fee increase or consent requirement if usage exceeds a certain threshold?"),
    ("Ip Ownership Assignment", "Does intellectual property created by one party become the property of the counterparty?"),
    ("Joint Ip Ownership", "Is there any clause providing for joint or shared ownership of intellectual property?"),
    ("License Grant", "Does the contract contain a license granted by one party to its counterparty?"),
    ("Non-Transferable License", "Does the contract limit the ability of a party to transfer the license?"),
    ("Affiliate License-Licensor", "Does the contract contain a license grant by affiliates of the licensor?"),
    ("Affiliate License-Licensee", "Does the contract contain a license grant to a licensee and its affiliates?"),
    ("Unlimited/All-You-Can-Eat-License", "Is there an unlimited usage or all-you-can-eat license?"),
    ("Irrevocable Or Perpetual License", "Does the contract contain a license grant that is irrevocable or perpetual?"),
    ("Source Code Escrow", "Is one party required to deposit its source code into escrow with a third party?"),
    ("Post-Termination Services", "Is a party subject to obligations after the termination or expiration of the contract?"),
    ("Audit Rights", "Does a party have the right to audit the books, records or operations of the counterparty?"),
    ("Uncapped Liability", "Is a party's liability uncapped upon the breach of its obligations?"),
    ("Cap On Liability", "Does the contract include a cap on liability upon breach of a party's obligation?"),
    ("Liquidated Damages", "Does the contract contain a clause awarding liquidated damages?"),
    ("Warranty Duration", "What is the duration of any warranty against defects or errors?"),
    ("Insurance", "Is there a requirement for insurance that must be maintained by one party?"),
    ("Covenant Not To Sue", "Is a party restricted from contesting the validity of the counterparty's IP or bringing claims?"),
    ("Third Party Beneficiary", "Is there a non-contracting party who is a beneficiary of the contract?"),
]
CUAD_DETAILS = dict(CUAD_CATEGORIES)
CUAD_ORDER = [c for c, _ in CUAD_CATEGORIES]
assert len(CUAD_CATEGORIES) == 41


def cuad_question(category: str) -> str:
    return (
        f'Highlight the parts (if any) of this contract related to "{category}" that should be reviewed '
        f"by a lawyer. Details: {CUAD_DETAILS[category]}"
    )


# Each contract: title, context, {category: [answer spans]} for present
# categories, and a list of absent categories (answers empty).
CUAD_CONTRACTS = [
    # ---------------- train ----------------
    {
        "split": "train",
        "title": "BRIGHTWATERINSTRUMENTSINC_04_12_2018-EX-10.2-DISTRIBUTION AGREEMENT",
        "context": """EXHIBIT 10.2

DISTRIBUTION AGREEMENT

This Distribution Agreement (the "Agreement") is entered into as of April 12, 2018 (the "Effective Date") by and between Brightwater Instruments, Inc., a Delaware corporation ("Supplier"), and Nordhaven Supply Co., an Oregon limited liability company ("Distributor").

1. Appointment. Supplier hereby appoints Distributor as its exclusive distributor of the Products in the Territory, and Supplier shall not appoint any other distributor or sell the Products directly to customers in the Territory during the Term.

2. Minimum Purchases. Distributor shall purchase Products having an aggregate invoice value of not less than $750,000 during each Contract Year. If Distributor fails to meet this minimum, Supplier may convert the appointment to a non-exclusive appointment upon thirty (30) days' written notice.

3. Term and Renewal. The initial term of this Agreement shall commence on the Effective Date and continue for three (3) years (the "Term"). Thereafter, this Agreement shall automatically renew for successive one (1) year periods unless either party gives written notice of non-renewal at least ninety (90) days prior to the end of the then-current term.

4. Non-Competition. During the Term and for one (1) year thereafter, Distributor shall not market, sell or distribute any product that competes with the Products in the Territory.

5. Warranty. Supplier warrants that the Products will be free from defects in materials and workmanship for a period of twelve (12) months from the date of delivery to the end customer.

6. Limitation of Liability. In no event shall either party's aggregate liability under this Agreement exceed the amounts paid by Distributor to Supplier during the twelve (12) months preceding the claim.

7. Assignment. Distributor may not assign or transfer this Agreement, in whole or in part, without the prior written consent of Supplier.

8. Governing Law. This Agreement shall be governed by the laws of the State of Oregon, without regard to its conflict of laws provisions.

IN WITNESS WHEREOF, the parties have executed this Agreement as of the Effective Date.""",
        "present": {
            "Document Name": ["DISTRIBUTION AGREEMENT"],
            "Parties": ["Brightwater Instruments, Inc.", "Supplier", "Nordhaven Supply Co.", "Distributor"],
            "Agreement Date": ["April 12, 2018"],
            "Renewal Term": [
                "Thereafter, this Agreement shall automatically renew for successive one (1) year periods unless either party gives written notice of non-renewal at least ninety (90) days prior to the end of the then-current term."
            ],
            "Governing Law": [
                "This Agreement shall be governed by the laws of the State of Oregon, without regard to its conflict of laws provisions."
            ],
            "Non-Compete": [
                "During the Term and for one (1) year thereafter, Distributor shall not market, sell or distribute any product that competes with the Products in the Territory."
            ],
            "Exclusivity": [
                "Supplier hereby appoints Distributor as its exclusive distributor of the Products in the Territory, and Supplier shall not appoint any other distributor or sell the Products directly to customers in the Territory during the Term."
            ],
            "Minimum Commitment": [
                "Distributor shall purchase Products having an aggregate invoice value of not less than $750,000 during each Contract Year."
            ],
            "Anti-Assignment": [
                "Distributor may not assign or transfer this Agreement, in whole or in part, without the prior written consent of Supplier."
            ],
        },
        "absent": [
            "Most Favored Nation", "Source Code Escrow", "Liquidated Damages", "Audit Rights",
            "Insurance", "Joint Ip Ownership", "Covenant Not To Sue",
        ],
    },
    {
        "split": "train",
        "title": "QUILLFEATHERSOFTWARELTD_06_01_2020-EX-10.7-SOFTWARE LICENSE AGREEMENT",
        "context": """SOFTWARE LICENSE AGREEMENT

This Software License Agreement is made on June 1, 2020 between Quillfeather Software Ltd., a company organized under the laws of Ontario ("Licensor"), and Harborview Medical Group, P.C., a New York professional corporation ("Licensee").

1. License Grant. Subject to the terms of this Agreement, Licensor grants to Licensee a non-exclusive, non-transferable license to install and use the Software at the Licensee Facilities solely for Licensee's internal business purposes. Licensee's Affiliates may use the Software under this license, provided that Licensee remains responsible for their compliance with this Agreement.

2. Fees. Licensee shall pay the annual license fee set out in Schedule A within thirty (30) days after receipt of each invoice.

3. Source Code Escrow. Within sixty (60) days after the date of this Agreement, Licensor shall deposit the source code of the Software with an independent escrow agent reasonably acceptable to Licensee and shall update the deposit with each major release.

4. Records and Audit. Licensor may, no more than once per calendar year and upon fifteen (15) days' prior written notice, audit Licensee's use of the Software to verify compliance with the license restrictions.

5. Term and Termination. This Agreement shall expire on May 31, 2023 unless terminated earlier in accordance with this Section. Licensee may terminate this Agreement for convenience upon sixty (60) days' written notice to Licensor.

6. Transition Assistance. Upon any expiration or termination of this Agreement, Licensor shall provide reasonable transition assistance to Licensee for a period of ninety (90) days at Licensor's then-current rates.

7. Insurance. Licensor shall maintain professional liability insurance with limits of not less than $2,000,000 per claim throughout the term of this Agreement.

8. Governing Law. This Agreement is governed by the laws of the State of New York.

Each party has caused this Agreement to be signed by its duly authorized representative.""",
        "present": {
            "Document Name": ["SOFTWARE LICENSE AGREEMENT"],
            "Parties": ["Quillfeather Software Ltd.", "Licensor", "Harborview Medical Group, P.C.", "Licensee"],
            "Agreement Date": ["June 1, 2020"],
            "Expiration Date": ["This Agreement shall expire on May 31, 2023 unless terminated earlier in accordance with this Section."],
            "Governing Law": ["This Agreement is governed by the laws of the State of New York."],
            "Termination For Convenience": [
                "Licensee may terminate this Agreement for convenience upon sixty (60) days' written notice to Licensor."
            ],
            "License Grant": [
                "Licensor grants to Licensee a non-exclusive, non-transferable license to install and use the Software at the Licensee Facilities solely for Licensee's internal business purposes."
            ],
            "Non-Transferable License": [
                "Licensor grants to Licensee a non-exclusive, non-transferable license to install and use the Software at the Licensee Facilities solely for Licensee's internal business purposes."
            ],
            "Affiliate License-Licensee": [
                "Licensee's Affiliates may use the Software under this license, provided that Licensee remains responsible for their compliance with this Agreement."
            ],
            "Source Code Escrow": [
                "Licensor shall deposit the source code of the Software with an independent escrow agent reasonably acceptable to Licensee and shall update the deposit with each major release."
            ],
            "Post-Termination Services": [
                "Upon any expiration or termination of this Agreement, Licensor shall provide reasonable transition assistance to Licensee for a period of ninety (90) days at Licensor's then-current rates."
            ],
            "Audit Rights": [
                "Licensor may, no more than once per calendar year and upon fifteen (15) days' prior written notice, audit Licensee's use of the Software to verify compliance with the license restrictions."
            ],
            "Insurance": [
                "Licensor shall maintain professional liability insurance with limits of not less than $2,000,000 per claim throughout the term of this Agreement."
            ],
        },
        "absent": ["Renewal Term", "Non-Compete", "Exclusivity", "Minimum Commitment", "Change Of Control", "Liquidated Damages", "Third Party Beneficiary"],
    },
    {
        "split": "train",
        "title": "ELMSTEADORGANICSLLC_09_15_2019-EX-10.4-SUPPLY AGREEMENT",
        "context": """SUPPLY AGREEMENT

THIS SUPPLY AGREEMENT is dated September 15, 2019 and is made by and between Elmstead Organics, LLC ("Buyer") and Copperleaf Farms Cooperative ("Seller").

1. Supply. Seller agrees to sell and Buyer agrees to buy the organic grain products described in Exhibit A in the quantities set out in Buyer's quarterly forecasts.

2. Pricing. Prices shall remain fixed for the first twelve (12) months of this Agreement. Thereafter Seller may increase prices once per year by no more than three percent (3%). If Seller offers any other customer prices for comparable products that are lower than those charged to Buyer, Seller shall promptly offer the same lower prices to Buyer.

3. Order Limits. Buyer shall not place orders in any quarter exceeding one hundred twenty percent (120%) of its forecast for that quarter without Seller's prior written consent.

4. Right of First Refusal. Before selling any surplus harvest to a third party, Seller shall first offer such surplus to Buyer on the same terms, and Buyer shall have ten (10) business days to accept the offer.

5. Late Delivery. If Seller fails to deliver an order by the confirmed delivery date, Seller shall pay Buyer, as liquidated damages and not as a penalty, five hundred dollars ($500) for each day of delay.

6. Change of Control. Either party may terminate this Agreement upon written notice if the other party undergoes a change of control.

7. Entire Agreement. This Agreement constitutes the entire agreement of the parties concerning its subject matter.

8. Law. This Agreement shall be interpreted under the laws of the State of California.

Signed by the parties on the date first written above.""",
        "present": {
            "Document Name": ["SUPPLY AGREEMENT"],
            "Parties": ["Elmstead Organics, LLC", "Buyer", "Copperleaf Farms Cooperative", "Seller"],
            "Agreement Date": ["September 15, 2019"],
            "Governing Law": ["This Agreement shall be interpreted under the laws of the State of California."],
            "Most Favored Nation": [
                "If Seller offers any other customer prices for comparable products that are lower than those charged to Buyer, Seller shall promptly offer the same lower prices to Buyer."
            ],
            "Rofr/Rofo/Rofn": [
                "Before selling any surplus harvest to a third party, Seller shall first offer such surplus to Buyer on the same terms, and Buyer shall have ten (10) business days to accept the offer."
            ],
            "Change Of Control": [
                "Either party may terminate this Agreement upon written notice if the other party undergoes a change of control."
            ],
            "Price Restrictions": [
                "Prices shall remain fixed for the first twelve (12) months of this Agreement.",
                "Thereafter Seller may increase prices once per year by no more than three percent (3%).",
            ],
            "Volume Restriction": [
                "Buyer shall not place orders in any quarter exceeding one hundred twenty percent (120%) of its forecast for that quarter without Seller's prior written consent."
            ],
            "Liquidated Damages": [
                "If Seller fails to deliver an order by the confirmed delivery date, Seller shall pay Buyer, as liquidated damages and not as a penalty, five hundred dollars ($500) for each day of delay."
            ],
        },
        "absent": ["Effective Date", "Expiration Date", "Non-Compete", "Anti-Assignment", "License Grant", "Warranty Duration", "Insurance"],
    },
    # ---------------- test ----------------
    {
        "split": "test",
        "title": "ARCTURUSROBOTICSCORP_01_20_2021-EX-10.3-JOINT DEVELOPMENT AGREEMENT",
        "context": """EXHIBIT 10.3

JOINT DEVELOPMENT AGREEMENT

This Joint Development Agreement is entered into on January 20, 2021 by Arcturus Robotics Corp., a Nevada corporation ("Arcturus"), and Tidewell University Research Foundation, a Massachusetts nonprofit corporation ("Foundation").

1. Program. The parties shall collaborate on the design of an autonomous inspection platform according to the work plan in Schedule 1.

2. Ownership. All inventions conceived jointly by employees of both parties in the course of the Program shall be jointly owned by Arcturus and Foundation, each having an undivided one-half interest. Any invention made solely by Foundation personnel using Arcturus funding is hereby assigned to Arcturus.

3. Publication. Foundation may publish the results of the Program after giving Arcturus forty-five (45) days to review any proposed publication.

4. Non-Solicitation. During the Program and for twelve (12) months thereafter, neither party shall solicit for employment any employee of the other party who worked on the Program.

5. Public Statements. Neither party shall make any public statement that disparages the other party or its research.

6. No Challenge. Foundation shall not contest the validity of any Arcturus patent that claims technology developed under the Program.

7. Term. This Agreement shall remain in effect for two (2) years from the date hereof.

8. Governing Law. The laws of the Commonwealth of Massachusetts govern this Agreement.

Agreed and accepted by the authorized officers of each party.""",
        "present": {
            "Document Name": ["JOINT DEVELOPMENT AGREEMENT"],
            "Parties": ["Arcturus Robotics Corp.", "Arcturus", "Tidewell University Research Foundation", "Foundation"],
            "Agreement Date": ["January 20, 2021"],
            "Expiration Date": ["This Agreement shall remain in effect for two (2) years from the date hereof."],
            "Governing Law": ["The laws of the Commonwealth of Massachusetts govern this Agreement."],
            "No-Solicit Of Employees": [
                "During the Program and for twelve (12) months thereafter, neither party shall solicit for employment any employee of the other party who worked on the Program."
            ],
            "Non-Disparagement": ["Neither party shall make any public statement that disparages the other party or its research."],
            "Ip Ownership Assignment": [
                "Any invention made solely by Foundation personnel using Arcturus funding is hereby assigned to Arcturus."
            ],
            "Joint Ip Ownership": [
                "All inventions conceived jointly by employees of both parties in the course of the Program shall be jointly owned by Arcturus and Foundation, each having an undivided one-half interest."
            ],
            "Covenant Not To Sue": [
                "Foundation shall not contest the validity of any Arcturus patent that claims technology developed under the Program."
            ],
        },
        "absent": ["Renewal Term", "Exclusivity", "Minimum Commitment", "Source Code Escrow", "Audit Rights", "Liquidated Damages", "Insurance"],
    },
    {
        "split": "test",
        "title": "SUNMILLBAKERYFRANCHISINGINC_03_03_2017-EX-10.11-FRANCHISE AGREEMENT",
        "context": """FRANCHISE AGREEMENT

This Franchise Agreement is made as of March 3, 2017 between Sunmill Bakery Franchising, Inc., a Georgia corporation ("Franchisor"), and R. Patel Enterprises LLC ("Franchisee").

1. Grant. Franchisor grants Franchisee the right to operate one Sunmill Bakery at the approved location using the Sunmill marks and system.

2. Royalty. Franchisee shall pay Franchisor a continuing royalty equal to six percent (6%) of Gross Sales, payable weekly.

3. Term. The term of this Agreement is ten (10) years from the date of opening. Franchisee may renew this Agreement for one additional term of five (5) years if Franchisee is not in default and gives notice of its election to renew at least one hundred eighty (180) days before expiration.

4. Records. Franchisor and its designees may inspect and audit the books and records of the bakery at any time during normal business hours.

5. Insurance. Franchisee shall maintain general liability insurance of at least $1,000,000 per occurrence naming Franchisor as an additional insured.

6. Covenant Not to Compete. During the term and for two (2) years after expiration or termination, Franchisee shall not own or operate any bakery or cafe within ten (10) miles of the approved location. This restriction shall not apply to ownership of less than two percent (2%) of the shares of a publicly traded company.

7. Transfer. Franchisee shall not transfer this Agreement or any interest in the bakery without Franchisor's prior written approval.

8. Governing Law. This Agreement is governed by Georgia law.

The parties have signed this Agreement on the date first written above.""",
        "present": {
            "Document Name": ["FRANCHISE AGREEMENT"],
            "Parties": ["Sunmill Bakery Franchising, Inc.", "Franchisor", "R. Patel Enterprises LLC", "Franchisee"],
            "Agreement Date": ["March 3, 2017"],
            "Expiration Date": ["The term of this Agreement is ten (10) years from the date of opening."],
            "Renewal Term": [
                "Franchisee may renew this Agreement for one additional term of five (5) years if Franchisee is not in default and gives notice of its election to renew at least one hundred eighty (180) days before expiration."
            ],
            "Governing Law": ["This Agreement is governed by Georgia law."],
            "Non-Compete": [
                "During the term and for two (2) years after expiration or termination, Franchisee shall not own or operate any bakery or cafe within ten (10) miles of the approved location."
            ],
            "Competitive Restriction Exception": [
                "This restriction shall not apply to ownership of less than two percent (2%) of the shares of a publicly traded company."
            ],
            "Anti-Assignment": [
                "Franchisee shall not transfer this Agreement or any interest in the bakery without Franchisor's prior written approval."
            ],
            "Revenue/Profit Sharing": [
                "Franchisee shall pay Franchisor a continuing royalty equal to six percent (6%) of Gross Sales, payable weekly."
            ],
            "Audit Rights": [
                "Franchisor and its designees may inspect and audit the books and records of the bakery at any time during normal business hours."
            ],
            "Insurance": [
                "Franchisee shall maintain general liability insurance of at least $1,000,000 per occurrence naming Franchisor as an additional insured."
            ],
        },
        "absent": ["Most Favored Nation", "Termination For Convenience", "Change Of Control", "Price Restrictions", "Source Code Escrow", "Liquidated Damages", "Third Party Beneficiary"],
    },
    {
        "split": "test",
        "title": "COBALTLINENETWORKSINC_08_08_2022-EX-10.5-HOSTING SERVICES AGREEMENT",
        "context": """HOSTING SERVICES AGREEMENT

This Hosting Services Agreement (this "Agreement") is effective as of August 8, 2022 and is between Cobaltline Networks, Inc. ("Provider") and Greyfield Retail Holdings, Inc. ("Customer").

1. Services. Provider shall host and operate Customer's e-commerce platform in accordance with the service levels in Exhibit B.

2. Warranty. Provider warrants that the Services will be performed in a professional manner and will conform to the Documentation for ninety (90) days following each release. Customer's sole remedy for breach of this warranty is re-performance of the affected Services.

3. Limitation of Liability. Except as provided below, Provider's total liability arising out of this Agreement shall not exceed the fees paid by Customer in the six (6) months before the event giving rise to the claim. The foregoing limitation shall not apply to Provider's indemnification obligations or to damages arising from Provider's breach of its confidentiality obligations.

4. Termination. Customer may terminate this Agreement at any time, without cause, by giving Provider thirty (30) days' written notice.

5. Data Return. For sixty (60) days after termination, Provider shall continue to make Customer Data available for export and shall then securely delete it.

6. License to Customer Content. Customer grants Provider a limited license to use Customer Content solely to perform the Services.

7. Governing Law. This Agreement shall be governed by the laws of the State of Washington.

Executed by the authorized representatives of the parties.""",
        "present": {
            "Document Name": ["HOSTING SERVICES AGREEMENT"],
            "Parties": ["Cobaltline Networks, Inc.", "Provider", "Greyfield Retail Holdings, Inc.", "Customer"],
            "Agreement Date": ["August 8, 2022"],
            "Effective Date": ["This Hosting Services Agreement (this \"Agreement\") is effective as of August 8, 2022"],
            "Governing Law": ["This Agreement shall be governed by the laws of the State of Washington."],
            "Termination For Convenience": [
                "Customer may terminate this Agreement at any time, without cause, by giving Provider thirty (30) days' written notice."
            ],
            "License Grant": ["Customer grants Provider a limited license to use Customer Content solely to perform the Services."],
            "Post-Termination Services": [
                "For sixty (60) days after termination, Provider shall continue to make Customer Data available for export and shall then securely delete it."
            ],
            "Uncapped Liability": [
                "The foregoing limitation shall not apply to Provider's indemnification obligations or to damages arising from Provider's breach of its confidentiality obligations."
            ],
            "Cap On Liability": [
                "Provider's total liability arising out of this Agreement shall not exceed the fees paid by Customer in the six (6) months before the event giving rise to the claim."
            ],
            "Warranty Duration": [
                "Provider warrants that the Services will be performed in a professional manner and will conform to the Documentation for ninety (90) days following each release."
            ],
        },
        "absent": ["Renewal Term", "Most Favored Nation", "Non-Compete", "Exclusivity", "Change Of Control", "Anti-Assignment", "Irrevocable Or Perpetual License"],
    },
]

CUAD_SCHEMA = hf_schema([
    ("id", pa.string(), f_value("string")),
    ("title", pa.string(), f_value("string")),
    ("context", pa.string(), f_value("string")),
    ("question", pa.string(), f_value("string")),
    (
        "answers",
        pa.struct([("text", pa.list_(pa.string())), ("answer_start", pa.list_(pa.int32()))]),
        f_sequence({"text": f_value("string"), "answer_start": f_value("int32")}),
    ),
])


def cuad_contract_rows(contract: dict) -> list[dict]:
    ctx = contract["context"]
    cats = dict(contract["present"])
    for c in contract["absent"]:
        assert c not in cats, c
        cats[c] = []
    rows = []
    for cat in CUAD_ORDER:  # CUAD lists each contract's questions in category order
        if cat not in cats:
            continue
        texts = cats[cat]
        starts = []
        for t in texts:
            pos = ctx.find(t)
            assert pos >= 0, (contract["title"], cat, t)
            starts.append(pos)
        rows.append({
            "id": f"{contract['title']}__{cat}",
            "title": contract["title"],
            "context": ctx,
            "question": cuad_question(cat),
            "answers": {"text": list(texts), "answer_start": starts},
        })
    return rows


def make_cuad() -> dict:
    write_ref(CUAD_REPO, CUAD_REV)
    files = {}
    train_contracts = [c for c in CUAD_CONTRACTS if c["split"] == "train"]
    test_contracts = [c for c in CUAD_CONTRACTS if c["split"] == "test"]
    # train is sharded (the converter splits shards at ~500 MB of Arrow data);
    # one contract per shard here.
    for i, contract in enumerate(train_contracts):
        path = f"default/train/{i:04d}.parquet"
        rows = cuad_contract_rows(contract)
        write_parquet(CUAD_REPO, path, CUAD_SCHEMA, rows)
        files[path] = len(rows)
    test_rows = [r for c in test_contracts for r in cuad_contract_rows(c)]
    write_parquet(CUAD_REPO, "default/test/0000.parquet", CUAD_SCHEMA, test_rows)
    files["default/test/0000.parquet"] = len(test_rows)
    return files


# ==========================================================================
# 3. LEDGAR  (coastalcph/lex_glue, main, config "ledgar")
# ==========================================================================

LEDGAR_REPO = "coastalcph/lex_glue"
LEDGAR_REV = "main"

LEDGAR_LABELS = [
    "Adjustments", "Agreements", "Amendments", "Anti-Corruption Laws", "Applicable Laws", "Approvals",
    "Arbitration", "Assignments", "Assigns", "Authority", "Authorizations", "Base Salary", "Benefits",
    "Binding Effects", "Books", "Brokers", "Capitalization", "Change In Control", "Closings",
    "Compliance With Laws", "Confidentiality", "Consent To Jurisdiction", "Consents", "Construction",
    "Cooperation", "Costs", "Counterparts", "Death", "Defined Terms", "Definitions", "Disability",
    "Disclosures", "Duties", "Effective Dates", "Effectiveness", "Employment", "Enforceability",
    "Enforcements", "Entire Agreements", "Erisa", "Existence", "Expenses", "Fees", "Financial Statements",
    "Forfeitures", "Further Assurances", "General", "Governing Laws", "Headings", "Indemnifications",
    "Indemnity", "Insurances", "Integration", "Intellectual Property", "Interests", "Interpretations",
    "Jurisdictions", "Liens", "Litigations", "Miscellaneous", "Modifications", "No Conflicts",
    "No Defaults", "No Waivers", "Non-Disparagement", "Notices", "Organizations", "Participations",
    "Payments", "Positions", "Powers", "Publicity", "Qualifications", "Records", "Releases", "Remedies",
    "Representations", "Sales", "Sanctions", "Severability", "Solvency", "Specific Performance",
    "Submission To Jurisdiction", "Subsidiaries", "Successors", "Survival", "Tax Withholdings", "Taxes",
    "Terminations", "Terms", "Titles", "Transactions With Affiliates", "Use Of Proceeds", "Vacations",
    "Venues", "Vesting", "Waiver Of Jury Trials", "Waivers", "Warranties", "Withholdings",
]
assert len(LEDGAR_LABELS) == 100 and len(set(LEDGAR_LABELS)) == 100

# Invented provision templates, 3 per label; slots are filled per row.
LEDGAR_TEMPLATES = {
    "Governing Laws": [
        "This {doc} shall be governed by, and construed in accordance with, the laws of the State of {state}, without regard to conflicts of law principles that would require the application of the laws of any other jurisdiction.",
        "All questions concerning the construction, validity and interpretation of this {doc} will be governed by the internal laws of the State of {state}.",
        "The rights and obligations of {a} and {b} under this {doc} shall be governed by the laws of the State of {state}, applicable to contracts made and to be performed entirely therein.",
    ],
    "Notices": [
        "All notices and other communications hereunder shall be in writing and shall be deemed given when delivered personally, {days} business days after being mailed by certified mail, return receipt requested, or one business day after being sent by a nationally recognized overnight courier to the address of {b} set forth on the signature page hereto.",
        "Any notice required or permitted to be given under this {doc} shall be sufficient if in writing and sent by registered mail to {a} at its principal office, or to {b} at the last address on file with {a}.",
        "Notices to {a} shall be addressed to its Chief Financial Officer, with a copy to its General Counsel, and shall be effective upon receipt or refusal of delivery; notices to {b} may also be given by electronic mail.",
    ],
    "Severability": [
        "If any provision of this {doc} is held to be invalid or unenforceable, the remaining provisions shall continue in full force and effect.",
        "In the event that any term of this {doc} is determined by a court of competent jurisdiction in the State of {state} to be illegal or unenforceable, such term shall be modified to the minimum extent necessary to make it enforceable, and the remaining terms shall not be affected.",
        "Each provision of this {doc} shall be interpreted so as to be effective and valid under applicable law, but if any provision is prohibited or invalid, such provision shall be ineffective only to the extent of such prohibition or invalidity, without invalidating the remainder of this {doc}.",
    ],
    "Counterparts": [
        "This {doc} may be executed in any number of counterparts, each of which shall be deemed an original, but all of which together shall constitute one and the same instrument.",
        "This {doc} may be executed in {n} or more counterparts, and signatures delivered by facsimile or electronic transmission in portable document format shall be deemed original signatures for all purposes.",
        "{a} and {b} may sign this {doc} in separate counterparts, which taken together shall constitute a single agreement binding on each of them.",
    ],
    "Entire Agreements": [
        "This {doc} constitutes the entire agreement between {a} and {b} with respect to the subject matter hereof and supersedes all prior negotiations, understandings and agreements, whether written or oral.",
        "This {doc}, together with the Exhibits attached hereto, sets forth the entire understanding of the parties and supersedes any prior agreement between {a} and {b} relating to the same subject matter.",
        "Except as expressly provided herein, this {doc} contains the whole agreement between {a} and {b} and there are no other representations, warranties or covenants relating to its subject matter.",
    ],
    "Amendments": [
        "This {doc} may not be amended or modified except by an instrument in writing signed by both {a} and {b}.",
        "No amendment of any provision of this {doc} shall be effective unless it is in writing and signed by {a} and, in the case of any amendment adverse to {b}, by {b}.",
        "Any provision of this {doc} may be amended only with the written consent of holders of at least {pct}% of the outstanding principal amount.",
    ],
    "Confidentiality": [
        "{b} agrees to hold in strict confidence all Confidential Information disclosed by {a} under this {doc} and shall not disclose such information to any third party without the prior written consent of {a}, except as required by law.",
        "During the term of this {doc} and for {years} years thereafter, each party shall keep confidential the terms of this {doc} and any non-public information received from the other party.",
        "The obligations of confidentiality set forth in Section {sec} shall not apply to information that is or becomes publicly available through no fault of {b}.",
    ],
    "Terminations": [
        "Either party may terminate this {doc} upon {days} days' prior written notice to the other party.",
        "{a} may terminate this {doc} immediately upon written notice if {b} materially breaches any provision hereof and fails to cure such breach within {days} days after receiving notice thereof.",
        "This {doc} shall terminate automatically upon the dissolution, liquidation or bankruptcy of {a} or {b}.",
    ],
    "Indemnifications": [
        "{b} shall indemnify, defend and hold harmless {a} and its officers, directors and employees from and against any and all losses, claims, damages and expenses, including reasonable attorneys' fees, arising out of {b}'s breach of this {doc}.",
        "Each of {a} and {b} agrees to indemnify the other against any third-party claim arising from its own gross negligence or willful misconduct in connection with this {doc}.",
        "{a} shall reimburse {b} for all costs reasonably incurred in defending any action covered by the indemnity in Section {sec} of this {doc}.",
    ],
    "Waivers": [
        "No failure or delay by {a} in exercising any right under this {doc} shall operate as a waiver thereof.",
        "The waiver by {a} or {b} of a breach of any provision of this {doc} shall not operate or be construed as a waiver of any subsequent breach.",
        "Any waiver under this {doc} must be in writing and signed by the party against whom it is to be enforced, and shall apply only to the specific instance identified in such writing.",
    ],
    "Assignments": [
        "Neither party may assign this {doc} without the prior written consent of the other party, except that {a} may assign this {doc} to an affiliate or to a successor in connection with a merger or sale of substantially all of its assets.",
        "{b} shall not assign, delegate or otherwise transfer any of its rights or obligations hereunder, and any purported assignment in violation of Section {sec} shall be void.",
        "This {doc} shall be binding upon the parties and their permitted assigns; {a} may freely assign its rights to receive payment hereunder without the consent of {b}.",
    ],
    "Taxes": [
        "{b} shall be responsible for all sales, use and excise taxes imposed on the transactions contemplated by this {doc}, other than taxes based on {a}'s net income.",
        "All payments under this {doc} shall be made without deduction for any taxes, except as required by applicable law, in which case {a} shall gross up such payment so that {b} receives the full amount.",
        "{a} shall pay when due all property taxes assessed against the Premises for any period during the term of this {doc}, prorated for any partial year.",
    ],
}

LEDGAR_SLOTS = {
    "parties": [
        ("the Company", "the Executive"), ("Borrower", "Lender"), ("Seller", "Purchaser"), ("Licensor", "Licensee"),
        ("the Employer", "the Employee"), ("Landlord", "Tenant"), ("the Issuer", "the Holder"), ("Supplier", "Customer"),
        ("the Partnership", "the Limited Partner"), ("the Bank", "the Guarantor"), ("Parent", "Merger Sub"),
    ],
    "doc": ["Agreement", "Lease", "Note", "Plan", "Amendment", "Guaranty", "Credit Agreement", "Warrant"],
    "state": ["Delaware", "New York", "California", "Texas", "Illinois", "Massachusetts", "Nevada", "Ohio", "Colorado"],
    "days": ["five", "ten", "fifteen", "thirty", "sixty", "ninety", "three"],
    "n": ["two", "three", "four"],
    "pct": ["51", "66 2/3", "75", "60"],
    "years": ["two", "three", "five", "one"],
    "sec": ["4.2", "7.1", "9", "10.3", "12(b)", "6.5", "8.4"],
}


def ledgar_text(label: str, k: int) -> str:
    """k-th invented provision for a label (k = running index within label)."""
    tmpl = LEDGAR_TEMPLATES[label][k % 3]
    s = LEDGAR_SLOTS

    def pick(slot: str):
        h = int(hashlib.sha1(f"{label}|{k}|{slot}".encode()).hexdigest(), 16)
        return s[slot][h % len(s[slot])]

    a, b = pick("parties")
    text = tmpl.format(
        a=a, b=b, doc=pick("doc"), state=pick("state"), days=pick("days"), n=pick("n"), pct=pick("pct"),
        years=pick("years"), sec=pick("sec"),
    )
    return text[0].upper() + text[1:]


LEDGAR_SCHEMA = hf_schema([
    ("text", pa.string(), f_value("string")),
    ("label", pa.int64(), f_classlabel(LEDGAR_LABELS)),
])


def ledgar_rows() -> dict[str, list[dict]]:
    per_split = {"train": 4, "validation": 3, "test": 4}
    out = {s: [] for s in per_split}
    seen = set()
    for label in LEDGAR_TEMPLATES:
        k = 0
        for split, n in per_split.items():
            for _ in range(n):
                while ledgar_text(label, k) in seen:  # keep every provision distinct
                    k += 1
                    assert k < 1000, label
                text = ledgar_text(label, k)
                seen.add(text)
                out[split].append({"text": text, "label": LEDGAR_LABELS.index(label)})
                k += 1
    for split in out:
        random.Random("ledgar-" + split).shuffle(out[split])
    return out


def make_ledgar() -> dict:
    write_ref(LEDGAR_REPO, LEDGAR_REV)
    files = {}
    for split, rows in ledgar_rows().items():
        path = f"ledgar/{split}-00000-of-00001.parquet"
        write_parquet(LEDGAR_REPO, path, LEDGAR_SCHEMA, rows)
        files[path] = len(rows)
    return files


# ==========================================================================
# 4. Financial PhraseBank  (takala/financial_phrasebank, refs/convert/parquet,
#    config "sentences_allagree", single split "train")
# ==========================================================================

FPB_REPO = "takala/financial_phrasebank"
FPB_REV = "refs/convert/parquet"
FPB_LABELS = ["negative", "neutral", "positive"]

FPB_COMPANIES = [
    "Valtasaari Oyj", "Kuusela Group", "Pohjanmaa Steel", "Lumikki Foods", "Harjula Systems", "Norrvik Paper",
    "Aaltoranta Telecom", "Saarinen Logistics", "Ketola Engineering", "Revontuli Energy", "Tammisto Pharma",
    "Kivikko Cables", "Järvelä Consulting", "Ilvesranta Media", "Kaarnakoski Timber", "Sorsala Retail",
    "Hiidenvesi Chemicals", "Pakkala Machinery",
]
FPB_TOWNS = ["Tampere", "Oulu", "Vaasa", "Kuopio", "Lahti", "Pori", "Jyväskylä", "Rauma", "Kotka"]
FPB_MONTHS = ["January", "February", "March", "April", "May", "June", "August", "September", "October", "November"]

FPB_TEMPLATES = {
    "positive": [
        "{co} 's net sales increased by {p} % to EUR {x} mn in the first quarter of {yr} .",
        "Operating profit rose to EUR {x} mn from EUR {y} mn in the corresponding period in {yr0} .",
        "{co} has won an order worth EUR {x} mn from a utility in {town} .",
        "The order backlog of {co} grew {p} % year-on-year to EUR {x} mn .",
        "{co} said its earnings per share improved to EUR 0.{eps} from EUR 0.{eps0} .",
        "Profit before taxes increased to EUR {x} mn , compared with EUR {y} mn a year ago .",
    ],
    "negative": [
        "{co} 's operating loss widened to EUR {y} mn from EUR {x} mn .",
        "Net sales of {co} decreased by {p} % to EUR {x} mn in {yr} .",
        "{co} will cut {n} jobs at its plant in {town} .",
        "The company 's pretax profit fell to EUR {x} mn from EUR {y} mn in {yr0} .",
        "{co} issued a profit warning for the full year {yr} , citing weak demand .",
        "Shares in {co} dropped {p} % after the quarterly report missed expectations .",
    ],
    "neutral": [
        "{co} is headquartered in {town} , Finland .",
        "The agreement between {co} and the city of {town} was signed on {month} {day} , {yr} .",
        "{co} employs around {n} people in {k} countries .",
        "The shares of {co} will be listed on the main list of the Helsinki exchange from {month} {day} .",
        "{co} will publish its interim report for January-{month} on {month} {day} , {yr} .",
        "{co} supplies packaging materials and services to the food industry in {town} .",
    ],
}

FPB_SCHEMA = hf_schema([
    ("sentence", pa.string(), f_value("string")),
    ("label", pa.int64(), f_classlabel(FPB_LABELS)),
])


def fpb_rows() -> list[dict]:
    # x is the current figure; y is the earlier one (lower for positive news,
    # higher for negative news).
    rng = random.Random(2264)
    rows, seen = [], set()
    for label_name, templates in FPB_TEMPLATES.items():
        i = 0
        while sum(1 for r in rows if r["label"] == FPB_LABELS.index(label_name)) < 18:  # 18 per class
            tmpl = templates[i % len(templates)]
            x = rng.randint(12, 480) / 10
            y = round(x * rng.uniform(0.5, 0.9), 1) if label_name == "positive" else round(x * rng.uniform(1.1, 1.8), 1)
            yr = rng.choice([2006, 2007, 2008, 2009, 2010])
            eps = rng.randint(20, 99)
            sentence = tmpl.format(
                co=FPB_COMPANIES[(i + 5 * len(rows)) % len(FPB_COMPANIES)], p=rng.randint(2, 45),
                x=x, y=y, yr=yr, yr0=yr - 1, town=rng.choice(FPB_TOWNS), n=rng.randint(3, 90) * 10,
                k=rng.randint(2, 30), eps=eps, eps0=rng.randint(10, eps - 1), month=rng.choice(FPB_MONTHS),
                day=rng.randint(1, 28),
            )
            i += 1
            if sentence in seen:
                continue
            seen.add(sentence)
            rows.append({"sentence": sentence, "label": FPB_LABELS.index(label_name)})
    rng.shuffle(rows)
    return rows


def make_fpb() -> dict:
    write_ref(FPB_REPO, FPB_REV)
    rows = fpb_rows()
    path = "sentences_allagree/train/0000.parquet"
    write_parquet(FPB_REPO, path, FPB_SCHEMA, rows)
    return {path: len(rows)}


# ==========================================================================
# 5. MedMCQA  (openlifescienceai/medmcqa, main, config "default")
# ==========================================================================

MEDMCQA_REPO = "openlifescienceai/medmcqa"
MEDMCQA_REV = "main"
MEDMCQA_COP_NAMES = ["a", "b", "c", "d"]

# (fact tables used to build invented single-answer MCQs)
MED_TABLES = [
    {
        "subject": "Biochemistry", "topic": "Vitamins",
        "q_fwd": "Deficiency of {k} causes", "q_rev": "{v} is caused by deficiency of",
        "exp": "{k} deficiency leads to {v}.",
        "pairs": [
            ("Thiamine", "Beriberi"), ("Niacin", "Pellagra"), ("Vitamin C", "Scurvy"), ("Vitamin D", "Rickets"),
            ("Vitamin A", "Night blindness"), ("Vitamin K", "Hypoprothrombinemia"), ("Riboflavin", "Angular cheilitis"),
            ("Vitamin B12", "Subacute combined degeneration of the spinal cord"),
        ],
    },
    {
        "subject": "Anatomy", "topic": "Nerve supply",
        "q_fwd": "Nerve supply of {k} is", "q_rev": "{v} supplies which of the following muscles?",
        "exp": "{k} is supplied by the {v}.",
        "pairs": [
            ("Deltoid", "Axillary nerve"), ("Biceps brachii", "Musculocutaneous nerve"),
            ("Serratus anterior", "Long thoracic nerve"), ("Diaphragm", "Phrenic nerve"),
            ("Gluteus maximus", "Inferior gluteal nerve"), ("Trapezius", "Spinal accessory nerve"),
            ("Latissimus dorsi", "Thoracodorsal nerve"), ("Quadriceps femoris", "Femoral nerve"),
            ("Tibialis anterior", "Deep peroneal nerve"), ("Adductor pollicis", "Ulnar nerve"),
        ],
    },
    {
        "subject": "Pharmacology", "topic": None,
        "q_fwd": "{k} belongs to which class of drugs?", "q_rev": "Which of the following drugs is classified as: {v}?",
        "exp": "{k} is a {v}.",
        "pairs": [
            ("Atenolol", "Beta blocker"), ("Amlodipine", "Calcium channel blocker"), ("Enalapril", "ACE inhibitor"),
            ("Losartan", "Angiotensin receptor blocker"), ("Furosemide", "Loop diuretic"), ("Metformin", "Biguanide"),
            ("Omeprazole", "Proton pump inhibitor"), ("Atorvastatin", "HMG-CoA reductase inhibitor"),
            ("Ondansetron", "5-HT3 antagonist"), ("Spironolactone", "Aldosterone antagonist"),
            ("Salbutamol", "Beta-2 agonist"), ("Warfarin", "Vitamin K antagonist"),
        ],
    },
    {
        "subject": "Microbiology", "topic": "Bacteriology",
        "q_fwd": "{k} is the causative agent of", "q_rev": "Causative organism of {v} is",
        "exp": "{v} is caused by {k}.",
        "pairs": [
            ("Treponema pallidum", "Syphilis"), ("Vibrio cholerae", "Cholera"), ("Clostridium tetani", "Tetanus"),
            ("Corynebacterium diphtheriae", "Diphtheria"), ("Mycobacterium leprae", "Leprosy"),
            ("Bordetella pertussis", "Whooping cough"), ("Salmonella Typhi", "Typhoid fever"),
            ("Leptospira interrogans", "Weil's disease"), ("Yersinia pestis", "Plague"),
        ],
    },
    {
        "subject": "Physiology", "topic": "Endocrinology",
        "q_fwd": "{k} is secreted by", "q_rev": "Which hormone is secreted by the {v}?",
        "exp": "{k} is produced by the {v}.",
        "pairs": [
            ("Insulin", "Beta cells of pancreas"), ("Glucagon", "Alpha cells of pancreas"),
            ("Calcitonin", "Parafollicular cells of thyroid"), ("Renin", "Juxtaglomerular cells"),
            ("Aldosterone", "Zona glomerulosa"), ("Cortisol", "Zona fasciculata"),
            ("Erythropoietin", "Peritubular interstitial cells of kidney"),
        ],
    },
]

# Invented stand-alone questions: (question, [a,b,c,d], correct index, choice_type, subject, topic, exp)
MED_EXTRA = [
    ("Normal adult resting heart rate (beats per minute) is", ["40-50", "60-100", "110-130", "140-160"], 1, "single", "Physiology", "Cardiovascular system", "A resting rate of 60-100 per minute is considered normal in adults."),
    ("Most common site of ectopic pregnancy is", ["Ampulla of fallopian tube", "Ovary", "Cervix", "Abdominal cavity"], 0, "single", "Gynaecology & Obstetrics", "Ectopic pregnancy", "The ampullary part of the tube is the usual site."),
    ("Universal donor blood group is", ["AB positive", "A negative", "O negative", "B positive"], 2, "single", "Pathology", "Blood transfusion", "O negative red cells lack A, B and D antigens."),
    ("Which of the following is a water soluble vitamin?", ["Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K"], 1, "single", "Biochemistry", "Vitamins", "Vitamins B and C are water soluble."),
    ("Koplik spots are seen in", ["Rubella", "Measles", "Mumps", "Chickenpox"], 1, "single", "Pediatrics", "Infectious diseases", "Koplik spots appear on the buccal mucosa before the measles rash."),
    ("Drug of choice for anaphylactic shock is", ["Adrenaline", "Atropine", "Dopamine", "Hydrocortisone"], 0, "single", "Pharmacology", "Autonomic nervous system", "Intramuscular adrenaline is the first-line treatment."),
    ("Lateral rectus muscle is supplied by", ["Oculomotor nerve", "Trochlear nerve", "Abducens nerve", "Facial nerve"], 2, "single", "Ophthalmology", "Ocular motility", "The sixth cranial nerve supplies the lateral rectus."),
    ("Normal intraocular pressure (mm Hg) is", ["2-8", "10-21", "25-35", "40-50"], 1, "single", "Ophthalmology", "Glaucoma", "Values above 21 mm Hg are regarded as raised."),
    ("All of the following are features of nephrotic syndrome except", ["Proteinuria", "Hypoalbuminemia", "Edema", "RBC casts in urine"], 3, "multi", "Medicine", "Kidney", "RBC casts suggest a nephritic picture."),
    ("All of the following are live vaccines except", ["BCG", "MMR", "Oral polio vaccine", "Hepatitis B vaccine"], 3, "multi", "Social & Preventive Medicine", "Immunization", "Hepatitis B vaccine is a recombinant subunit vaccine."),
    ("Which of the following local anaesthetics is an ester?", ["Procaine", "Lidocaine", "Bupivacaine", "Ropivacaine"], 0, "single", "Anaesthesia", "Local anaesthetics", "Procaine is an ester; the others are amides."),
    ("In an adult, each upper limb accounts for what percentage of body surface area by the rule of nines?", ["4.5%", "9%", "18%", "1%"], 1, "single", "Surgery", "Burns", "Each upper limb is 9% in the adult rule of nines."),
    ("First permanent tooth to erupt is", ["Maxillary central incisor", "Mandibular first molar", "Maxillary canine", "Mandibular second premolar"], 1, "single", "Dental", None, "The mandibular first molar erupts at about six years."),
    ("Bell's palsy involves which cranial nerve?", ["Trigeminal", "Facial", "Glossopharyngeal", "Vagus"], 1, "single", "ENT", "Facial nerve", "Bell's palsy is an idiopathic lower motor neuron facial palsy."),
    ("Tumor marker for hepatocellular carcinoma is", ["CA-125", "PSA", "Alpha-fetoprotein", "CEA"], 2, "single", "Pathology", "Neoplasia", "AFP is raised in many hepatocellular carcinomas."),
    ("Postmortem lividity is also known as", ["Rigor mortis", "Livor mortis", "Algor mortis", "Cadaveric spasm"], 1, "single", "Forensic Medicine", "Postmortem changes", "Livor mortis is the pooling of blood in dependent parts."),
    ("Most common type of thyroid cancer is", ["Papillary carcinoma", "Follicular carcinoma", "Medullary carcinoma", "Anaplastic carcinoma"], 0, "single", "Surgery", "Thyroid", "Papillary carcinoma is the most frequent type."),
    ("Anhedonia and alogia are examples of", ["Positive symptoms", "Negative symptoms", "Cognitive distortions", "Delusions"], 1, "single", "Psychiatry", "Schizophrenia", "They are negative symptoms of schizophrenia."),
    ("Investigation of choice to detect a small pneumoperitoneum is", ["Erect chest X-ray", "Barium meal", "CT scan", "MRI"], 2, "single", "Radiology", None, "CT can detect very small amounts of free gas."),
    ("Fracture of the scaphoid typically follows a fall on the", ["Outstretched hand", "Flexed elbow", "Shoulder tip", "Back of the hand"], 0, "single", "Orthopaedics", "Wrist injuries", "A fall on the outstretched hand is the usual mechanism."),
    ("Auspitz sign is seen in", ["Lichen planus", "Psoriasis", "Pemphigus", "Tinea corporis"], 1, "single", "Skin", "Papulosquamous disorders", "Removal of scales in psoriasis shows pinpoint bleeding."),
    ("All of the following are causes of microcytic anemia except", ["Iron deficiency", "Thalassemia", "Anemia of chronic disease", "Folate deficiency"], 3, "multi", "Pathology", "Anemia", "Folate deficiency causes a macrocytic anemia."),
]

MEDMCQA_SCHEMA = hf_schema([
    ("id", pa.string(), f_value("string")),
    ("question", pa.string(), f_value("string")),
    ("opa", pa.string(), f_value("string")),
    ("opb", pa.string(), f_value("string")),
    ("opc", pa.string(), f_value("string")),
    ("opd", pa.string(), f_value("string")),
    ("cop", pa.int64(), f_classlabel(MEDMCQA_COP_NAMES)),
    ("choice_type", pa.string(), f_value("string")),
    ("exp", pa.string(), f_value("string")),
    ("subject_name", pa.string(), f_value("string")),
    ("topic_name", pa.string(), f_value("string")),
])


def medmcqa_items() -> list[dict]:
    rng = random.Random(194)
    items = []
    for table in MED_TABLES:
        pairs = table["pairs"]
        for idx, (k, v) in enumerate(pairs):
            for direction in ("fwd", "rev"):
                if direction == "fwd":
                    q, right, pool = table["q_fwd"].format(k=k), v, [p[1] for p in pairs if p[1] != v]
                else:
                    q, right, pool = table["q_rev"].format(v=v), k, [p[0] for p in pairs if p[0] != k]
                distract = rng.sample(pool, 3)
                cop = rng.randrange(4)
                opts = distract[:cop] + [right] + distract[cop:]
                items.append({
                    "question": q, "opts": opts, "cop": cop, "choice_type": "single",
                    "exp": table["exp"].format(k=k, v=v), "subject_name": table["subject"],
                    "topic_name": table["topic"],
                })
    for q, opts, cop, ctype, subj, topic, exp in MED_EXTRA:
        items.append({"question": q, "opts": list(opts), "cop": cop, "choice_type": ctype, "exp": exp,
                      "subject_name": subj, "topic_name": topic})
    rng.shuffle(items)
    return items


def medmcqa_rows() -> dict[str, list[dict]]:
    items = medmcqa_items()
    train, val, test = split_rows(items, [40, 30, 42])
    out = {}
    for split, chunk in (("train", train), ("validation", val), ("test", test)):
        rows = []
        for n, it in enumerate(chunk):
            rid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bwb-fixture/medmcqa/{split}/{n}"))
            exp = it["exp"]
            if split == "train" and n in (5, 17):
                exp = None  # some real training rows have no explanation
            row = {
                "id": rid, "question": it["question"], "opa": it["opts"][0], "opb": it["opts"][1],
                "opc": it["opts"][2], "opd": it["opts"][3], "cop": it["cop"], "choice_type": it["choice_type"],
                "exp": exp, "subject_name": it["subject_name"], "topic_name": it["topic_name"],
            }
            if split == "test":  # the real test split is unlabeled: cop = -1, exp = ""
                row["cop"] = -1
                row["exp"] = ""
            rows.append(row)
        out[split] = rows
    return out


def make_medmcqa() -> dict:
    write_ref(MEDMCQA_REPO, MEDMCQA_REV)
    files = {}
    for split, rows in medmcqa_rows().items():
        path = f"data/{split}-00000-of-00001.parquet"
        write_parquet(MEDMCQA_REPO, path, MEDMCQA_SCHEMA, rows)
        files[path] = len(rows)
    return files


# ==========================================================================
# 6. MBPP  (google-research-datasets/mbpp, main, config "full")
# ==========================================================================

MBPP_REPO = "google-research-datasets/mbpp"
MBPP_REV = "main"

# Invented tasks: (function name, prompt text, reference code, call-argument
# sources).  test_list asserts are derived by running the reference code, and
# are re-checked in a fresh python3 process by verify().
MBPP_TASKS = [
    ("sum_of_digits", "Write a python function to find the sum of the digits of a non-negative integer.",
     "def sum_of_digits(n):\n    total = 0\n    while n > 0:\n        total += n % 10\n        n //= 10\n    return total",
     ["12345", "0", "909"]),
    ("reverse_words", "Write a function to reverse the order of words in a given sentence.",
     "def reverse_words(s):\n    return ' '.join(s.split()[::-1])", ["'hello big world'", "'python'", "'a b c d'"]),
    ("count_vowels", "Write a python function to count the number of vowels in a string.",
     "def count_vowels(s):\n    return sum(1 for ch in s.lower() if ch in 'aeiou')", ["'Programming'", "'sky'", "'AEIOU and more'"]),
    ("is_palindrome_num", "Write a function to check whether a given integer is a palindrome.",
     "def is_palindrome_num(n):\n    s = str(n)\n    return s == s[::-1]", ["121", "123", "7"]),
    ("second_largest", "Write a function to find the second largest distinct number in a list.",
     "def second_largest(nums):\n    uniq = sorted(set(nums))\n    return uniq[-2]", ["[4, 1, 9, 7]", "[10, 10, 3]", "[-5, -2, -9]"]),
    ("flatten_once", "Write a function to flatten a list of lists by one level.",
     "def flatten_once(lists):\n    out = []\n    for part in lists:\n        out.extend(part)\n    return out",
     ["[[1, 2], [3], []]", "[['a'], ['b', 'c']]", "[]"]),
    ("max_of_three", "Write a function to find the maximum of three numbers.",
     "def max_of_three(a, b, c):\n    best = a\n    if b > best:\n        best = b\n    if c > best:\n        best = c\n    return best",
     ["1, 5, 3", "-1, -7, -2", "4, 4, 4"]),
    ("c_to_f", "Write a function to convert a temperature from Celsius to Fahrenheit.",
     "def c_to_f(c):\n    return c * 9 / 5 + 32", ["0", "100", "-40"]),
    ("gcd", "Write a function to find the greatest common divisor of two positive integers.",
     "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a", ["12, 18", "17, 5", "100, 75"]),
    ("lcm", "Write a python function to find the least common multiple of two positive integers.",
     "def lcm(a, b):\n    x, y = a, b\n    while y:\n        x, y = y, x % y\n    return a * b // x", ["4, 6", "7, 3", "10, 15"]),
    ("is_prime", "Write a function to check if the given number is a prime number.",
     "def is_prime(n):\n    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n        if n % i == 0:\n            return False\n        i += 1\n    return True",
     ["13", "1", "21"]),
    ("factorial", "Write a function to compute the factorial of a non-negative integer.",
     "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result", ["5", "0", "10"]),
    ("fibonacci", "Write a function to find the n-th Fibonacci number, where fibonacci(1) = fibonacci(2) = 1.",
     "def fibonacci(n):\n    a, b = 1, 1\n    for _ in range(n - 1):\n        a, b = b, a + b\n    return a", ["1", "7", "15"]),
    ("count_words", "Write a function to count the number of words in a string.",
     "def count_words(s):\n    return len(s.split())", ["'the quick brown fox'", "''", "'  spaced   out  '"]),
    ("remove_duplicates", "Write a function to remove duplicate elements from a list while keeping the original order.",
     "def remove_duplicates(items):\n    seen = set()\n    out = []\n    for x in items:\n        if x not in seen:\n            seen.add(x)\n            out.append(x)\n    return out",
     ["[1, 2, 1, 3, 2]", "['a', 'a']", "[]"]),
    ("common_elements", "Write a function to find the common elements of two lists, returned in sorted order.",
     "def common_elements(a, b):\n    return sorted(set(a) & set(b))", ["[1, 2, 3], [2, 3, 4]", "[5], [6]", "[3, 1, 2], [2, 1]"]),
    ("char_frequency", "Write a function to count the frequency of each character in a string and return a dictionary.",
     "def char_frequency(s):\n    freq = {}\n    for ch in s:\n        freq[ch] = freq.get(ch, 0) + 1\n    return freq", ["'hello'", "'aaa'", "'ab'"]),
    ("capitalize_words", "Write a function to capitalize the first letter of every word in a string.",
     "def capitalize_words(s):\n    return ' '.join(w[:1].upper() + w[1:] for w in s.split(' '))", ["'hello world'", "'a quick test'", "'x'"]),
    ("binary_to_decimal", "Write a function to convert a binary string to its decimal value.",
     "def binary_to_decimal(b):\n    value = 0\n    for bit in b:\n        value = value * 2 + int(bit)\n    return value", ["'1010'", "'0'", "'11111111'"]),
    ("decimal_to_binary", "Write a function to convert a non-negative integer to its binary representation as a string.",
     "def decimal_to_binary(n):\n    if n == 0:\n        return '0'\n    digits = ''\n    while n:\n        digits = str(n % 2) + digits\n        n //= 2\n    return digits",
     ["10", "0", "255"]),
    ("list_product", "Write a python function to find the product of all numbers in a list.",
     "def list_product(nums):\n    p = 1\n    for x in nums:\n        p *= x\n    return p", ["[1, 2, 3, 4]", "[]", "[-2, 5]"]),
    ("find_missing", "Write a function to find the missing number in a list containing the numbers 1 to n with one number missing.",
     "def find_missing(nums, n):\n    return n * (n + 1) // 2 - sum(nums)", ["[1, 2, 4, 5], 5", "[2, 3], 3", "[1], 2"]),
    ("rotate_left", "Write a function to rotate a list to the left by k positions.",
     "def rotate_left(items, k):\n    if not items:\n        return []\n    k %= len(items)\n    return items[k:] + items[:k]",
     ["[1, 2, 3, 4, 5], 2", "[1, 2, 3], 4", "[], 3"]),
    ("is_anagram", "Write a function to check whether two strings are anagrams of each other.",
     "def is_anagram(a, b):\n    return sorted(a.replace(' ', '').lower()) == sorted(b.replace(' ', '').lower())",
     ["'listen', 'silent'", "'abc', 'abd'", "'Dormitory', 'dirty room'"]),
    ("count_upper", "Write a python function to count the uppercase characters in a given string.",
     "def count_upper(s):\n    return sum(1 for ch in s if ch.isupper())", ["'Hello World'", "'abc'", "'ABC def G'"]),
    ("square_list", "Write a function to square every element of a list.",
     "def square_list(nums):\n    return [x * x for x in nums]", ["[1, 2, 3]", "[-4]", "[]"]),
    ("filter_even", "Write a function to return only the even numbers of a list.",
     "def filter_even(nums):\n    return [x for x in nums if x % 2 == 0]", ["[1, 2, 3, 4, 6]", "[1, 3]", "[0, -2]"]),
    ("merge_dicts", "Write a function to merge two dictionaries, with values from the second taking priority.",
     "def merge_dicts(a, b):\n    out = dict(a)\n    out.update(b)\n    return out", ["{'x': 1}, {'y': 2}", "{'x': 1}, {'x': 3}", "{}, {}"]),
    ("longest_word", "Write a function to find the longest word in a sentence (the first one if there is a tie).",
     "def longest_word(s):\n    best = ''\n    for w in s.split():\n        if len(w) > len(best):\n            best = w\n    return best",
     ["'a quick brown fox'", "'hi yo'", "'extraordinary day'"]),
    ("string_to_tuple", "Write a function to convert a string to a tuple of its characters, ignoring spaces.",
     "def string_to_tuple(s):\n    return tuple(ch for ch in s if ch != ' ')", ["'ab c'", "'xyz'", "' '"]),
    ("tuple_sum", "Write a function to find the sum of all elements of a tuple.",
     "def tuple_sum(t):\n    total = 0\n    for x in t:\n        total += x\n    return total", ["(1, 2, 3)", "()", "(10, -4)"]),
    ("nth_triangular", "Write a function to find the n-th triangular number.",
     "def nth_triangular(n):\n    return n * (n + 1) // 2", ["1", "4", "100"]),
    ("is_perfect_square", "Write a python function to check whether the given number is a perfect square.",
     "def is_perfect_square(n):\n    if n < 0:\n        return False\n    r = int(n ** 0.5)\n    while r * r > n:\n        r -= 1\n    while (r + 1) * (r + 1) <= n:\n        r += 1\n    return r * r == n",
     ["16", "15", "0"]),
    ("min_max_diff", "Write a function to find the difference between the largest and smallest value in a list.",
     "def min_max_diff(nums):\n    return max(nums) - min(nums)", ["[3, 9, 1]", "[5]", "[-3, 4]"]),
    ("count_positive", "Write a python function to count the positive numbers in a list.",
     "def count_positive(nums):\n    return len([x for x in nums if x > 0])", ["[1, -2, 3, 0]", "[-1, -1]", "[7, 8]"]),
    ("cube_sum", "Write a python function to find the cube sum of the first n natural numbers.",
     "def cube_sum(n):\n    return sum(i ** 3 for i in range(1, n + 1))", ["2", "3", "5"]),
    ("replace_spaces", "Write a function to replace every space in a string with an underscore.",
     "def replace_spaces(s):\n    return s.replace(' ', '_')", ["'Hello World'", "'nospace'", "' a b '"]),
    ("remove_vowels", "Write a function to remove all vowels from a string.",
     "def remove_vowels(s):\n    return ''.join(ch for ch in s if ch.lower() not in 'aeiou')", ["'education'", "'rhythm'", "'AbcE'"]),
    ("first_repeated_char", "Write a python function to find the first repeated character in a given string, or 'None' if there is none.",
     "def first_repeated_char(s):\n    seen = set()\n    for ch in s:\n        if ch in seen:\n            return ch\n        seen.add(ch)\n    return 'None'",
     ["'abcabc'", "'abc'", "'123124'"]),
    ("is_sorted", "Write a function to check whether a list is sorted in non-decreasing order.",
     "def is_sorted(nums):\n    return all(nums[i] <= nums[i + 1] for i in range(len(nums) - 1))", ["[1, 2, 2, 5]", "[3, 1]", "[]"]),
    ("chunk_list", "Write a function to split a list into chunks of a given size.",
     "def chunk_list(items, size):\n    return [items[i:i + size] for i in range(0, len(items), size)]",
     ["[1, 2, 3, 4, 5], 2", "[1, 2, 3], 3", "[], 4"]),
    ("group_by_length", "Write a function to group words by their length into a dictionary.",
     "def group_by_length(words):\n    groups = {}\n    for w in words:\n        groups.setdefault(len(w), []).append(w)\n    return groups",
     ["['ab', 'cd', 'efg']", "['x']", "[]"]),
    ("average", "Write a function to calculate the average of a list of numbers.",
     "def average(nums):\n    return sum(nums) / len(nums)", ["[1, 2, 3, 4]", "[5]", "[2, 3]"]),
    ("median", "Write a function to find the median of a list of numbers.",
     "def median(nums):\n    s = sorted(nums)\n    m = len(s) // 2\n    if len(s) % 2:\n        return s[m]\n    return (s[m - 1] + s[m]) / 2",
     ["[3, 1, 2]", "[4, 1, 3, 2]", "[7]"]),
    ("sum_even_index", "Write a python function to find the sum of the elements at even indices of a list.",
     "def sum_even_index(nums):\n    return sum(nums[::2])", ["[1, 2, 3, 4, 5]", "[10]", "[]"]),
    ("pairwise_sum", "Write a function to add two lists element-wise.",
     "def pairwise_sum(a, b):\n    return [x + y for x, y in zip(a, b)]", ["[1, 2], [3, 4]", "[0], [5]", "[1, 1, 1], [2, 2, 2]"]),
    ("interleave", "Write a function to interleave two lists of equal length.",
     "def interleave(a, b):\n    out = []\n    for x, y in zip(a, b):\n        out.append(x)\n        out.append(y)\n    return out",
     ["[1, 3], [2, 4]", "['a'], ['b']", "[], []"]),
    ("count_char", "Write a python function to count the occurrences of a given character in a string.",
     "def count_char(s, c):\n    return s.count(c)", ["'banana', 'a'", "'apple', 'z'", "'mississippi', 's'"]),
    ("is_leap_year", "Write a function to check whether the given year is a leap year.",
     "def is_leap_year(y):\n    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)", ["2000", "1900", "2024"]),
    ("count_digits", "Write a python function to count the number of digits in a positive integer.",
     "def count_digits(n):\n    count = 0\n    while n:\n        count += 1\n        n //= 10\n    return count", ["5", "12345", "1000000"]),
    ("is_power_of_two", "Write a python function to check whether a positive integer is a power of two.",
     "def is_power_of_two(n):\n    return n > 0 and n & (n - 1) == 0", ["64", "12", "1"]),
    ("swap_case", "Write a function to swap the case of every letter in a string.",
     "def swap_case(s):\n    return ''.join(ch.lower() if ch.isupper() else ch.upper() for ch in s)", ["'Hello'", "'abc DEF'", "'123'"]),
    ("kth_smallest", "Write a function to find the k-th smallest element of a list.",
     "def kth_smallest(nums, k):\n    return sorted(nums)[k - 1]", ["[7, 2, 9, 4], 2", "[1], 1", "[5, 3, 8], 3"]),
    ("zip_to_dict", "Write a function to create a dictionary from a list of keys and a list of values.",
     "def zip_to_dict(keys, values):\n    return dict(zip(keys, values))", ["['a', 'b'], [1, 2]", "[], []", "[1], ['x']"]),
    ("remove_empty", "Write a function to remove empty strings from a list.",
     "def remove_empty(items):\n    return [x for x in items if x != '']", ["['a', '', 'b']", "['', '']", "['x']"]),
    ("find_index", "Write a function to find the index of the first occurrence of a value in a list, or -1 if it is absent.",
     "def find_index(items, x):\n    for i, v in enumerate(items):\n        if v == x:\n            return i\n    return -1",
     ["[4, 5, 6], 5", "[1, 2], 3", "[7, 7], 7"]),
    ("rectangle_perimeter", "Write a function to find the perimeter of a rectangle.",
     "def rectangle_perimeter(l, w):\n    return 2 * (l + w)", ["3, 4", "10, 1", "0, 5"]),
    ("circle_area", "Write a function to find the area of a circle rounded to two decimal places.",
     "import math\ndef circle_area(r):\n    return round(math.pi * r * r, 2)", ["1", "2.5", "10"]),
    ("hypotenuse", "Write a function to find the hypotenuse of a right angled triangle.",
     "def hypotenuse(a, b):\n    return (a * a + b * b) ** 0.5", ["3, 4", "5, 12", "8, 15"]),
    ("sum_of_squares", "Write a function to find the sum of squares of the elements of a list.",
     "def sum_of_squares(nums):\n    return sum(x * x for x in nums)", ["[1, 2, 3]", "[]", "[-2, 2]"]),
    ("max_in_tuples", "Write a function to find the maximum element of each tuple in a list of tuples.",
     "def max_in_tuples(tuples):\n    return [max(t) for t in tuples]", ["[(1, 5), (7, 2)]", "[(3,)]", "[(0, -1, -2), (4, 4)]"]),
    ("run_length_encode", "Write a function to perform run-length encoding of a string.",
     "def run_length_encode(s):\n    out = []\n    i = 0\n    while i < len(s):\n        j = i\n        while j < len(s) and s[j] == s[i]:\n            j += 1\n        out.append(s[i] + str(j - i))\n        i = j\n    return ''.join(out)",
     ["'aaabcc'", "'a'", "''"]),
    ("word_lengths", "Write a function to return the lengths of the words in a sentence.",
     "def word_lengths(s):\n    return [len(w) for w in s.split()]", ["'I love python'", "''", "'abc de'"]),
    ("count_distinct", "Write a python function to count the distinct elements in a list.",
     "def count_distinct(items):\n    return len(set(items))", ["[1, 2, 2, 3]", "[]", "['a', 'a']"]),
    ("is_subset", "Write a function to check whether the first list is a subset of the second list.",
     "def is_subset(a, b):\n    return set(a) <= set(b)", ["[1, 2], [1, 2, 3]", "[4], [1, 2]", "[], [1]"]),
    ("strip_punctuation", "Write a function to remove punctuation characters from a string.",
     "def strip_punctuation(s):\n    return ''.join(ch for ch in s if ch.isalnum() or ch.isspace())", ["'Hello, world!'", "'a.b.c'", "'no punctuation'"]),
    ("max_consecutive_ones", "Write a function to find the maximum number of consecutive 1s in a binary list.",
     "def max_consecutive_ones(bits):\n    best = cur = 0\n    for b in bits:\n        cur = cur + 1 if b == 1 else 0\n        best = max(best, cur)\n    return best",
     ["[1, 1, 0, 1, 1, 1]", "[0, 0]", "[1]"]),
    ("sum_range", "Write a function to find the sum of the numbers in a list between the indices i and j inclusive.",
     "def sum_range(nums, i, j):\n    return sum(nums[i:j + 1])", ["[1, 2, 3, 4, 5], 1, 3", "[5, 6], 0, 0", "[2, 4, 6], 0, 2"]),
    ("alternate_elements", "Write a function to return every other element of a list, starting with the first.",
     "def alternate_elements(items):\n    return items[::2]", ["['red', 'black', 'white', 'green']", "[1, 2, 3]", "[]"]),
    ("keys_by_value", "Write a function to return the keys of a dictionary sorted by their values.",
     "def keys_by_value(d):\n    return [k for k, _ in sorted(d.items(), key=lambda kv: kv[1])]", ["{'a': 3, 'b': 1, 'c': 2}", "{}", "{'x': 0}"]),
    ("count_occurrences", "Write a python function to count the occurrences of a substring in a string, including overlapping ones.",
     "def count_occurrences(s, sub):\n    count = 0\n    for i in range(len(s) - len(sub) + 1):\n        if s[i:i + len(sub)] == sub:\n            count += 1\n    return count",
     ["'aaaa', 'aa'", "'abcabc', 'abc'", "'abc', 'd'"]),
    ("is_armstrong", "Write a function to check whether the given number is an Armstrong number.",
     "def is_armstrong(n):\n    digits = str(n)\n    return n == sum(int(d) ** len(digits) for d in digits)", ["153", "154", "9474"]),
    ("sum_proper_divisors", "Write a function to find the sum of the proper divisors of a number.",
     "def sum_proper_divisors(n):\n    return sum(i for i in range(1, n) if n % i == 0)", ["12", "7", "28"]),
    ("is_perfect_number", "Write a python function to check whether a number is a perfect number.",
     "def is_perfect_number(n):\n    return n > 1 and sum(i for i in range(1, n) if n % i == 0) == n", ["6", "8", "496"]),
    ("concat_list", "Write a function to concatenate a list of strings into one string.",
     "def concat_list(items):\n    return ''.join(items)", ["['a', 'b', 'c']", "[]", "['hello', ' ', 'there']"]),
    ("key_with_max_value", "Write a function to find the key with the maximum value in a dictionary.",
     "def key_with_max_value(d):\n    return max(d, key=d.get)", ["{'a': 1, 'b': 5}", "{'x': -1}", "{'p': 2, 'q': 9, 'r': 4}"]),
    ("all_unique_chars", "Write a python function to check whether all the characters in a string are unique.",
     "def all_unique_chars(s):\n    return len(set(s)) == len(s)", ["'abc'", "'hello'", "''"]),
    ("nth_even", "Write a function to find the n-th even natural number.",
     "def nth_even(n):\n    return 2 * n", ["1", "3", "10"]),
    ("running_sum", "Write a function to compute the running (cumulative) sum of a list.",
     "def running_sum(nums):\n    out = []\n    total = 0\n    for x in nums:\n        total += x\n        out.append(total)\n    return out",
     ["[1, 2, 3]", "[5]", "[]"]),
    ("transpose", "Write a function to transpose a matrix given as a list of lists.",
     "def transpose(m):\n    return [list(row) for row in zip(*m)]", ["[[1, 2], [3, 4]]", "[[1, 2, 3]]", "[[5]]"]),
    ("last_digit", "Write a python function to find the last digit of a given non-negative number.",
     "def last_digit(n):\n    return n % 10", ["123", "0", "98760"]),
    ("first_digit", "Write a python function to find the first digit of a given positive number.",
     "def first_digit(n):\n    while n >= 10:\n        n //= 10\n    return n", ["123", "7", "98760"]),
    ("length_without_len", "Write a function to find the length of a string without using len().",
     "def length_without_len(s):\n    count = 0\n    for _ in s:\n        count += 1\n    return count", ["'hello'", "''", "'a b'"]),
    ("cap_first_last", "Write a python function to capitalize the first and last letters of each word in a string.",
     "def cap_first_last(s):\n    words = []\n    for w in s.split():\n        if len(w) == 1:\n            words.append(w.upper())\n        else:\n            words.append(w[0].upper() + w[1:-1] + w[-1].upper())\n    return ' '.join(words)",
     ["'python is fun'", "'a bc'", "'hadoop'"]),
    ("sum_positive", "Write a function to find the sum of the positive numbers in a list.",
     "def sum_positive(nums):\n    return sum(x for x in nums if x > 0)", ["[1, -2, 3]", "[-1]", "[]"]),
    ("invert_dict", "Write a function to invert a dictionary, swapping keys and values.",
     "def invert_dict(d):\n    return {v: k for k, v in d.items()}", ["{'a': 1, 'b': 2}", "{}", "{1: 'x'}"]),
    ("multiply_by_index", "Write a function to multiply each element of a list by its index.",
     "def multiply_by_index(nums):\n    return [i * x for i, x in enumerate(nums)]", ["[5, 5, 5]", "[]", "[1, 2, 3, 4]"]),
    ("even_odd_count", "Write a python function to count the even and odd numbers in a list and return them as a tuple.",
     "def even_odd_count(nums):\n    even = len([x for x in nums if x % 2 == 0])\n    return (even, len(nums) - even)", ["[1, 2, 3, 4, 5]", "[]", "[2, 4]"]),
    ("remove_char", "Write a python function to remove all occurrences of a given character from a string.",
     "def remove_char(s, c):\n    return s.replace(c, '')", ["'hello', 'l'", "'abc', 'z'", "'aaaa', 'a'"]),
    ("starts_with_vowel", "Write a function to check whether a string starts with a vowel.",
     "def starts_with_vowel(s):\n    return len(s) > 0 and s[0].lower() in 'aeiou'", ["'apple'", "'banana'", "''"]),
]

# Parametrised families add more distinct tasks.
for d in (3, 5, 7, 11, 13, 17):
    MBPP_TASKS.append((f"is_divisible_by_{d}", f"Write a python function to check whether the given number is divisible by {d} or not.",
                       f"def is_divisible_by_{d}(n):\n    return n % {d} == 0", [str(d * 4), str(d * 4 + 1), "0"]))
for k in (2, 3, 4, 5, 6):
    MBPP_TASKS.append((f"sum_multiples_of_{k}", f"Write a function to find the sum of the first n positive multiples of {k}.",
                       f"def sum_multiples_of_{k}(n):\n    return sum({k} * i for i in range(1, n + 1))", ["1", "4", "10"]))
for k in (2, 3, 4, 5, 6):
    MBPP_TASKS.append((f"power_list_{k}", f"Write a function to raise every element of a list to the power {k}.",
                       f"def power_list_{k}(nums):\n    return [x ** {k} for x in nums]", ["[1, 2, 3]", "[]", "[-1, 10]"]))
for t in (0, 5, 10, 50, 100):
    MBPP_TASKS.append((f"count_greater_than_{t}", f"Write a function to count the numbers in a list that are greater than {t}.",
                       f"def count_greater_than_{t}(nums):\n    return len([x for x in nums if x > {t}])",
                       [f"[{t - 1}, {t}, {t + 1}, {t + 20}]", "[]", f"[{t * 2 + 3}, {t + 7}]"]))
for m in (3, 7, 9, 10):
    MBPP_TASKS.append((f"sum_mod_{m}", f"Write a python function to find the remainder when the sum of a list is divided by {m}.",
                       f"def sum_mod_{m}(nums):\n    return sum(nums) % {m}", ["[1, 2, 3, 4]", "[]", f"[{m}, {m * 3}, 25]"]))

# Rows with a non-empty challenge_test_list / test_setup_code (as in a few real rows).
MBPP_CHALLENGE = {"is_prime": ["97", "7919"], "fibonacci": ["30", "50"]}
MBPP_SETUP = {"circle_area": "import math"}

MBPP_SCHEMA = hf_schema([
    ("task_id", pa.int32(), f_value("int32")),
    ("text", pa.string(), f_value("string")),
    ("code", pa.string(), f_value("string")),
    ("test_list", pa.list_(pa.string()), f_sequence(f_value("string"))),
    ("test_setup_code", pa.string(), f_value("string")),
    ("challenge_test_list", pa.list_(pa.string()), f_sequence(f_value("string"))),
])


def mbpp_asserts(fname: str, code: str, arg_sources: list[str], setup: str = "") -> list[str]:
    ns: dict = {}
    exec(setup + "\n" + code, ns)
    out = []
    for src in arg_sources:
        value = eval(f"{fname}({src})", ns)
        out.append(f"assert {fname}({src}) == {value!r}")
    return out


def mbpp_rows() -> dict[str, list[dict]]:
    tasks = list(MBPP_TASKS)
    names = [t[0] for t in tasks]
    assert len(set(names)) == len(names), "duplicate MBPP function names"
    random.Random(974).shuffle(tasks)
    # real task_id ranges: prompt 1-10, test 11-510, validation 511-600, train 601-974
    layout = [("prompt", 10, 1), ("test", 42, 11), ("validation", 30, 511), ("train", 32, 601)]
    assert sum(n for _, n, _ in layout) <= len(tasks), len(tasks)
    out, i = {}, 0
    for split, n, first_id in layout:
        rows = []
        for j, (fname, text, code, args) in enumerate(tasks[i : i + n]):
            setup = MBPP_SETUP.get(fname, "")
            rows.append({
                "task_id": first_id + j,
                "text": text,
                # the real MBPP code strings use Windows line endings
                "code": code.replace("\n", "\r\n"),
                "test_list": mbpp_asserts(fname, code, args, setup),
                "test_setup_code": setup,
                "challenge_test_list": mbpp_asserts(fname, code, MBPP_CHALLENGE.get(fname, []), setup),
            })
        out[split] = rows
        i += n
    return out


def make_mbpp() -> dict:
    write_ref(MBPP_REPO, MBPP_REV)
    files = {}
    for split, rows in mbpp_rows().items():
        path = f"full/{split}-00000-of-00001.parquet"
        write_parquet(MBPP_REPO, path, MBPP_SCHEMA, rows)
        files[path] = len(rows)
    return files


# ==========================================================================
# Context benchmarks (eval-only datasets, configs/datasets/)
# ==========================================================================
# A handful of invented rows each, in the real files' paths, column names, Arrow types
# (nested structs and lists as the hub stores them) and `huggingface` feature metadata.

HOTPOT_REPO = "hotpotqa/hotpot_qa"
HOTPOT_REV = "main"
HOTPOT_SCHEMA = hf_schema([
    ("id", pa.string(), f_value("string")),
    ("question", pa.string(), f_value("string")),
    ("answer", pa.string(), f_value("string")),
    ("type", pa.string(), f_value("string")),
    ("level", pa.string(), f_value("string")),
    ("supporting_facts", pa.struct([("title", pa.list_(pa.string())), ("sent_id", pa.list_(pa.int32()))]),
     f_sequence({"title": f_value("string"), "sent_id": f_value("int32")})),
    ("context", pa.struct([("title", pa.list_(pa.string())), ("sentences", pa.list_(pa.list_(pa.string())))]),
     f_sequence({"title": f_value("string"), "sentences": f_sequence(f_value("string"))})),
])

HOTPOT_ROWS = [
    ("5a7a06935542990198eaf050", "Which harbour town is the ferry operator Nordlys Lines based in, the one whose founder also designed the Kestrel lighthouse?",
     "Port Ellery", "bridge", "medium",
     [("Nordlys Lines", ["Nordlys Lines is a ferry operator based in Port Ellery.", " It was founded in 1962 by the engineer Mara Quill."]),
      ("Kestrel Lighthouse", ["The Kestrel Lighthouse stands on a granite spit north of the bay.", " It was designed by Mara Quill and first lit in 1958."]),
      ("Port Ellery", ["Port Ellery is a small harbour town with a population of 4,100.", " Its fish market dates from the 18th century."]),
      ("Gannet Rock", ["Gannet Rock is an uninhabited islet.", " Seabirds nest there every spring."])],
     [("Nordlys Lines", 0), ("Kestrel Lighthouse", 1)]),
    ("5ab3b0bf5542992ade7c6e39", "Are the novelists Ilse Varga and Tomas Brenn both from the same country?",
     "no", "comparison", "hard",
     [("Ilse Varga", ["Ilse Varga (born 1931) is a Hungarian novelist and translator."]),
      ("Tomas Brenn", ["Tomas Brenn was a Danish novelist.", " His best known book is The Salt Road (1974)."]),
      ("The Salt Road", ["The Salt Road is a 1974 novel set on the Jutland coast."])],
     [("Ilse Varga", 0), ("Tomas Brenn", 0)]),
    ("5a8c7595554299585d9e36b6", "In what year did the river on which the town of Lemford stands first freeze over completely?",
     "1893", "bridge", "easy",
     [("Lemford", ["Lemford is a market town on the River Aske."]),
      ("River Aske", ["The River Aske rises in the western hills.", " It froze over completely for the first time in 1893."]),
      ("Aske Bridge", ["Aske Bridge is a stone bridge built in 1702."])],
     [("Lemford", 0), ("River Aske", 1)]),
    ("5ae0185b55429942ec259c1b", "What instrument did the founder of the Halvard Quartet play?",
     "viola", "bridge", "medium",
     [("Halvard Quartet", ["The Halvard Quartet is a string quartet founded by Ruth Okafor in 1988."]),
      ("Ruth Okafor", ["Ruth Okafor is a violist and teacher.", " She played the viola in the quartet until 2004."]),
      ("String quartet", ["A string quartet has two violins, a viola and a cello."])],
     [("Halvard Quartet", 0), ("Ruth Okafor", 1)]),
]


def make_hotpotqa() -> dict:
    write_ref(HOTPOT_REPO, HOTPOT_REV)
    rows = []
    for id_, q, a, typ, level, paras, facts in HOTPOT_ROWS:
        rows.append({
            "id": id_, "question": q, "answer": a, "type": typ, "level": level,
            "supporting_facts": {"title": [t for t, _ in facts], "sent_id": [i for _, i in facts]},
            "context": {"title": [t for t, _ in paras], "sentences": [ss for _, ss in paras]},
        })
    path = "distractor/validation-00000-of-00001.parquet"
    write_parquet(HOTPOT_REPO, path, HOTPOT_SCHEMA, rows)
    return {path: len(rows)}


LONGBENCH_REPO = "THUDM/LongBench"
LONGBENCH_REV = "refs/convert/parquet"
LONGBENCH_SCHEMA = hf_schema([
    ("input", pa.string(), f_value("string")),
    ("context", pa.string(), f_value("string")),
    ("answers", pa.list_(pa.string()), f_sequence(f_value("string"))),
    ("length", pa.int32(), f_value("int32")),
    ("dataset", pa.string(), f_value("string")),
    ("language", pa.string(), f_value("string")),
    ("all_classes", pa.list_(pa.string()), f_sequence(f_value("string"))),
    ("_id", pa.string(), f_value("string")),
])

LONGBENCH_ITEMS = {
    "narrativeqa": [
        ("Why does Edda leave the lighthouse?", "Edda kept the lamp for eleven winters. When the letter came saying her brother was ill in the city, she left the key with the ferryman and took the morning boat.", ["To care for her sick brother."]),
        ("Who is given the key?", "The ferryman, Osk, had carried mail to the island for thirty years. Edda trusted no one else with the lamp, so she left the key with him before she sailed.", ["The ferryman, Osk.", "Osk"]),
        ("What does the play's chorus warn the king about?", "ACT ONE. The chorus enters. CHORUS: Beware the river, king, for it remembers every bridge you burned. The king laughs and orders a new bridge built.", ["That the river remembers the bridges he burned."]),
    ],
    "qasper": [
        ("Which dataset do they evaluate on?", "Abstract. We study compositional generalisation. Experiments. We evaluate on the SCAN benchmark and report exact-match accuracy over five seeds.", ["SCAN", "the SCAN benchmark"]),
        ("Do they use pretrained embeddings?", "Model. Word embeddings are initialised randomly and trained jointly with the encoder; no pretrained vectors are used.", ["No"]),
        ("What is the size of the corpus?", "Data. The corpus has 12,400 annotated sentences drawn from parliamentary debates.", ["12,400 sentences"]),
    ],
    "multifieldqa_en": [
        ("What voltage does the controller accept?", "Installation guide. The controller accepts 12 to 24 V DC. Do not connect mains voltage to the terminal block.", ["12 to 24 V DC"]),
        ("When was the trust founded?", "The Marsh Trust was founded in 1979 by local farmers to protect the wetland. It now manages 400 hectares.", ["1979"]),
        ("What is the recommended dose for adults?", "Dosage. Adults: one tablet twice daily with food. Children under 12: consult a doctor.", ["One tablet twice daily with food."]),
    ],
    "2wikimqa": [
        ("Who was born first, Anton Meyl or Clara Diaz?", "Passage 1:\nAnton Meyl (1902-1977) was an Austrian architect.\nPassage 2:\nClara Diaz (1911-1990) was a Chilean painter.", ["Anton Meyl"]),
        ("Where did the director of Gull Island die?", "Passage 1:\nGull Island is a 1958 film directed by Per Lund.\nPassage 2:\nPer Lund was a Norwegian film director. He died in Bergen in 1981.", ["Bergen"]),
        ("Are both films from the same country?", "Passage 1:\nNorth Light is a 1964 Swedish drama film.\nPassage 2:\nThe Quiet Field is a 1966 Swedish war film.", ["yes"]),
    ],
    "qmsum": [
        ("Summarize the discussion about the remote control's battery.", "Project Manager: Let's talk about the battery. Industrial Designer: A rechargeable cell adds cost but users like it. Marketing: Our survey says people forget to charge things. Project Manager: So standard batteries, then.", ["The team weighed a rechargeable battery against standard ones; because users forget to charge devices, they chose standard batteries."]),
        ("What did the committee decide about school meals?", "Chair: The next item is school meals. Member A: Costs rose eight percent. Member B: We should protect free meals for younger pupils. Chair: Agreed, we will fund them and review prices in spring.", ["The committee agreed to keep funding free meals for younger pupils despite an eight percent cost rise and to review prices in spring."]),
        ("Summarize the whole meeting.", "Professor: Today we look at the recogniser errors. Student: Most errors are in noisy rooms. Professor: Then next week we try the new noise model and compare.", ["The group found that most recogniser errors come from noisy rooms and planned to test a new noise model next week."]),
    ],
}


def make_longbench() -> dict:
    write_ref(LONGBENCH_REPO, LONGBENCH_REV)
    files = {}
    for task, items in LONGBENCH_ITEMS.items():
        rows = []
        for k, (q, ctx, answers) in enumerate(items):
            id_ = hashlib.sha1(f"{task}-{k}".encode()).hexdigest()[:48]
            rows.append({"input": q, "context": ctx, "answers": answers, "length": len(ctx.split()),
                         "dataset": task, "language": "en", "all_classes": None, "_id": id_})
        path = f"{task}/test/0000.parquet"
        write_parquet(LONGBENCH_REPO, path, LONGBENCH_SCHEMA, rows)
        files[path] = len(rows)
    return files


ETHIC_REPO = "dmis-lab/ETHIC"
ETHIC_REV = "refs/convert/parquet"


def ethic_schema(answer_is_list: bool) -> pa.Schema:
    answer = (pa.list_(pa.string()), f_sequence(f_value("string"))) if answer_is_list else (pa.string(), f_value("string"))
    return hf_schema([
        ("ID", pa.string(), f_value("string")),
        ("Domain", pa.string(), f_value("string")),
        ("System_msg", pa.string(), f_value("string")),
        ("User_msg", pa.string(), f_value("string")),
        ("Answer", answer[0], answer[1]),
    ])


ETHIC_SYSTEM = "You are a careful reader. Follow the instruction exactly and use only the given context."
ETHIC_ITEMS = {
    "Recalling": [
        ("Books_0001", "Books", "### Instruction:\nList every character who visits the mill, separated by commas.\n\n### Context:\n<Section 1> Anna walks to the mill at dawn. <Section 2> Later Piet and the miller's niece Lotte arrive with flour sacks.\n\nNow, respond to the instruction.", ["Anna", "Piet", "Lotte"]),
        ("Medicine_0002", "Medicine", "### Instruction:\nList every drug the patient received, separated by commas.\n\n### Context:\n<Section 1> The patient was given amoxicillin. <Section 2> Paracetamol was added for fever.\n\nNow, respond to the instruction.", ["amoxicillin", "paracetamol"]),
        ("Debates_0003", "Debates", "### Instruction:\nList every member who spoke about fisheries, separated by commas.\n\n### Context:\n<Section 1> Mr Hale raised quotas. <Section 2> Ms Orr replied on harbour funding.\n\nNow, respond to the instruction.", ["Mr Hale", "Ms Orr"]),
    ],
    "Summarizing": [
        ("Books_0101", "Books", "### Instruction:\nSummarize each section in one sentence, keeping the section tags.\n\n### Context:\n<Section 1> The storm wrecks the harbour wall. <Section 2> The villagers rebuild it together.\n\nNow, respond to the instruction.", "<Section 1> A storm destroys the harbour wall. <Section 2> The villagers rebuild it."),
        ("Law_0102", "Law", "### Instruction:\nSummarize each segment in one sentence, keeping the segment tags.\n\n### Context:\n<Segment 1> The tenant claims the deposit. <Segment 2> The court orders its return with interest.\n\nNow, respond to the instruction.", "<Segment 1> The tenant sues for the deposit. <Segment 2> The court orders it returned with interest."),
        ("Medicine_0103", "Medicine", "### Instruction:\nSummarize each section in one sentence, keeping the section tags.\n\n### Context:\n<Section 1> Trial design and enrolment. <Section 2> Outcomes favoured the treatment arm.\n\nNow, respond to the instruction.", "<Section 1> The trial design and enrolment are described. <Section 2> The treatment arm did better."),
    ],
    "Organizing": [
        ("Books_0201", "Books", "### Instruction:\nOrder the sections as the events happen. Answer with the section numbers.\n\n### Context:\n<Section 1> They marry. <Section 2> They meet. <Section 3> They argue.\n\nNow, respond to the instruction.", "2, 1, 3"),
        ("Debates_0202", "Debates", "### Instruction:\nOrder the sections by sitting date. Answer with the section numbers.\n\n### Context:\n<Section 1> Sitting of 3 May. <Section 2> Sitting of 1 May. <Section 3> Sitting of 2 May.\n\nNow, respond to the instruction.", "2, 3, 1"),
        ("Law_0203", "Law", "### Instruction:\nOrder the segments as the case proceeded. Answer with the segment numbers.\n\n### Context:\n<Segment 1> Appeal. <Segment 2> Filing. <Segment 3> Trial.\n\nNow, respond to the instruction.", "2, 3, 1"),
    ],
    "Attributing": [
        ("Law_0301", "Law", "### Instruction:\nWhich segments support the claim that the contract was void? Answer as 'Related Segments: ...'.\n\n### Context:\n<Segment 1> No consideration was paid. <Segment 2> The weather was fine. <Segment 3> One party was a minor.\n\nNow, respond to the instruction.", ["Segment 1", "Segment 3"]),
        ("Debates_0302", "Debates", "### Instruction:\nWhich segments mention rail funding? Answer as 'Related Segments: ...'.\n\n### Context:\n<Segment 1> Rail budgets rose. <Segment 2> Schools were discussed. <Segment 12> The rail levy was debated.\n\nNow, respond to the instruction.", ["Segment 1", "Segment 12"]),
        ("Books_0303", "Books", "### Instruction:\nWhich sections mention the dog? Answer as 'Related Segments: ...'.\n\n### Context:\n<Section 1> The cat sleeps. <Section 2> Rain falls.\n\nNow, respond to the instruction.", []),
    ],
}


def make_ethic() -> dict:
    write_ref(ETHIC_REPO, ETHIC_REV)
    files = {}
    for config, items in ETHIC_ITEMS.items():
        schema = ethic_schema(isinstance(items[0][3], list))
        rows = [{"ID": i, "Domain": d, "System_msg": ETHIC_SYSTEM, "User_msg": u, "Answer": a} for i, d, u, a in items]
        path = f"{config}/test/0000.parquet"
        write_parquet(ETHIC_REPO, path, schema, rows)
        files[path] = len(rows)
    return files


MSMARCO_REPO = "microsoft/ms_marco"
MSMARCO_REV = "main"
MSMARCO_SCHEMA = hf_schema([
    ("answers", pa.list_(pa.string()), f_sequence(f_value("string"))),
    ("passages", pa.struct([("is_selected", pa.list_(pa.int32())), ("passage_text", pa.list_(pa.string())),
                            ("url", pa.list_(pa.string()))]),
     f_sequence({"is_selected": f_value("int32"), "passage_text": f_value("string"), "url": f_value("string")})),
    ("query", pa.string(), f_value("string")),
    ("query_id", pa.int32(), f_value("int32")),
    ("query_type", pa.string(), f_value("string")),
    ("wellFormedAnswers", pa.list_(pa.string()), f_sequence(f_value("string"))),
])

MSMARCO_ROWS = [
    (9652, "how long to boil an egg for a soft yolk", "NUMERIC", ["6 minutes"], ["Boil an egg for about 6 minutes for a soft yolk."],
     [(0, "Hard-boiled eggs need 10 to 12 minutes.", "https://example.org/eggs/hard"),
      (1, "For a soft, runny yolk, boil the egg for 6 minutes, then cool it in cold water.", "https://example.org/eggs/soft"),
      (0, "Eggs keep for three weeks in the fridge.", "https://example.org/eggs/storage")]),
    (19335, "what is the capital of tasmania", "LOCATION", ["Hobart"], [],
     [(0, "Tasmania is an island state of Australia.", "https://example.org/tas"),
      (1, "Hobart, the capital of Tasmania, lies on the Derwent River.", "https://example.org/hobart"),
      (1, "Hobart is Tasmania's capital and largest city.", "https://example.org/hobart-city"),
      (0, "Launceston is the second city of Tasmania.", "https://example.org/launceston")]),
    (50390, "who painted the blue fox mural in lemford", "PERSON", ["No Answer Present."], [],
     [(0, "Lemford is a market town on the River Aske.", "https://example.org/lemford"),
      (0, "Foxes are common in the hills around the town.", "https://example.org/foxes")]),
    (72144, "define estuary", "DESCRIPTION", ["An estuary is the tidal mouth of a river, where fresh water meets the sea."], [],
     [(1, "An estuary is the wide tidal mouth of a river where fresh water mixes with sea water.", "https://example.org/estuary"),
      (0, "Deltas form where rivers deposit sediment.", "https://example.org/delta"),
      (0, "Salt marshes are coastal wetlands.", "https://example.org/marsh")]),
]


def make_msmarco() -> dict:
    write_ref(MSMARCO_REPO, MSMARCO_REV)
    rows = []
    for qid, query, qtype, answers, well, passages in MSMARCO_ROWS:
        rows.append({
            "answers": answers,
            "passages": {"is_selected": [s for s, _, _ in passages], "passage_text": [t for _, t, _ in passages],
                         "url": [u for _, _, u in passages]},
            "query": query, "query_id": qid, "query_type": qtype, "wellFormedAnswers": well,
        })
    path = "v2.1/validation-00000-of-00001.parquet"
    write_parquet(MSMARCO_REPO, path, MSMARCO_SCHEMA, rows)
    return {path: len(rows)}


FINBENCH_REPO = "PatronusAI/financebench"
FINBENCH_REV = "main"
FINBENCH_ROWS = [
    {"financebench_id": "financebench_id_00001", "company": "Northwind Freight", "doc_name": "NORTHWIND_2022_10K",
     "question_type": "metrics-generated", "question_reasoning": "Information extraction",
     "domain_question_num": None,
     "question": "What was Northwind Freight's FY2022 total revenue in USD millions?",
     "answer": "$4,210 million",
     "justification": "Total revenue is reported on the income statement.",
     "dataset_subset_label": "OPEN_SOURCE",
     "evidence": [{"evidence_text": "Total revenues 4,210 3,987",
                   "doc_name": "NORTHWIND_2022_10K", "evidence_page_num": 41,
                   "evidence_text_full_page": "Consolidated Statements of Income (in millions)\nTotal revenues 4,210 3,987\nOperating income 512 470\n"}],
     "gics_sector": "Industrials", "doc_type": "10k", "doc_period": 2022,
     "doc_link": "https://example.org/northwind-2022-10k.pdf"},
    {"financebench_id": "financebench_id_00002", "company": "Harbor Foods", "doc_name": "HARBORFOODS_2023Q2_10Q",
     "question_type": "novel-generated", "question_reasoning": "Numerical reasoning",
     "domain_question_num": None,
     "question": "What is Harbor Foods' quick ratio at the end of Q2 2023? Round to two decimals.",
     "answer": "0.84",
     "justification": "(Cash 310 + receivables 530) / current liabilities 1,000 = 0.84.",
     "dataset_subset_label": "OPEN_SOURCE",
     "evidence": [{"evidence_text": "Cash and equivalents 310", "doc_name": "HARBORFOODS_2023Q2_10Q", "evidence_page_num": 5,
                   "evidence_text_full_page": "Condensed Balance Sheet\nCash and equivalents 310\nReceivables 530\nInventories 620\nTotal current liabilities 1,000\n"},
                  {"evidence_text": "Receivables 530", "doc_name": "HARBORFOODS_2023Q2_10Q", "evidence_page_num": 5,
                   "evidence_text_full_page": "Condensed Balance Sheet\nCash and equivalents 310\nReceivables 530\nInventories 620\nTotal current liabilities 1,000\n"}],
     "gics_sector": "Consumer Staples", "doc_type": "10q", "doc_period": 2023,
     "doc_link": "https://example.org/harbor-2023q2-10q.pdf"},
    {"financebench_id": "financebench_id_00003", "company": "Corvid Software", "doc_name": "CORVID_2021_10K",
     "question_type": "domain-relevant", "question_reasoning": None,
     "domain_question_num": "dg04",
     "question": "Does Corvid Software have positive working capital based on FY2021 data?",
     "answer": "Yes. Current assets of $2.9 billion exceed current liabilities of $1.7 billion.",
     "justification": None,
     "dataset_subset_label": "OPEN_SOURCE",
     "evidence": [{"evidence_text": "Total current assets 2,901", "doc_name": "CORVID_2021_10K", "evidence_page_num": 60,
                   "evidence_text_full_page": "Consolidated Balance Sheets (in millions)\nTotal current assets 2,901\n"},
                  {"evidence_text": "Total current liabilities 1,712", "doc_name": "CORVID_2021_10K", "evidence_page_num": 61,
                   "evidence_text_full_page": "Liabilities (in millions)\nTotal current liabilities 1,712\n"}],
     "gics_sector": "Information Technology", "doc_type": "10k", "doc_period": 2021,
     "doc_link": "https://example.org/corvid-2021-10k.pdf"},
]


def make_financebench() -> dict:
    write_ref(FINBENCH_REPO, FINBENCH_REV)
    path = "financebench_merged.jsonl"
    out = repo_dir(FINBENCH_REPO) / "snapshots" / commit_for(FINBENCH_REPO) / path
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in FINBENCH_ROWS), encoding="utf-8")
    return {path: len(FINBENCH_ROWS)}


def verify_context(manifest: dict) -> None:
    """Every context-benchmark fixture reads back with its row count; nested columns intact."""
    for repo_id, (rev, files) in manifest.items():
        assert (repo_dir(repo_id) / "refs" / rev).read_bytes().decode("ascii") == commit_for(repo_id)
        for path, nrows in files.items():
            f = repo_dir(repo_id) / "snapshots" / commit_for(repo_id) / path
            if path.endswith(".jsonl"):
                rows = [json.loads(l) for l in f.read_text(encoding="utf-8").splitlines()]
                assert len(rows) == nrows and all(r["evidence"] for r in rows), f
                continue
            table = pq.read_table(f)
            assert table.num_rows == nrows, (f, table.num_rows)
            if repo_id == MSMARCO_REPO:
                for r in table.to_pylist():
                    p = r["passages"]
                    assert len(p["is_selected"]) == len(p["passage_text"]) == len(p["url"])
            if repo_id == HOTPOT_REPO:
                for r in table.to_pylist():
                    assert len(r["context"]["title"]) == len(r["context"]["sentences"])


# ==========================================================================
# Broken fixtures for error-path tests
# ==========================================================================


def make_broken() -> dict:
    BROKEN.mkdir(parents=True, exist_ok=True)
    good = repo_dir(BANKING77_REPO) / "snapshots" / commit_for(BANKING77_REPO) / "default/train/0000.parquet"
    data = good.read_bytes()
    truncated = BROKEN / "banking77_truncated.parquet"
    truncated.write_bytes(data[: len(data) // 2])

    rows = [
        {"text": "How do I get my new card working?", "label": 0},
        {"text": "When should I expect my card in the post?", "label": 11},
        {"text": "This row has no label at all.", "label": None},  # null label
        {"text": "How can I set a different PIN?", "label": 21},
        {"text": "This row has a label outside the 77 classes.", "label": 99},  # out of range
        {"text": "Please close my account.", "label": 55},
    ]
    bad = BROKEN / "banking77_bad_rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=BANKING77_SCHEMA), bad, compression="snappy")
    return {"banking77_truncated.parquet": len(data) // 2, "banking77_bad_rows.parquet": len(rows)}


README = """# Test fixtures

Generated by `python3 scripts/make_fixtures.py` (python3 + pyarrow, no network,
deterministic). Do not edit by hand; change the script and rerun it.

## hub/

A Hugging Face hub cache as read by hf-hub 0.4
(`Cache::new("tests/fixtures/hub").repo(Repo::with_revision(id, RepoType::Dataset, rev)).get(path)`):
`datasets--ORG--NAME/refs/REVISION` holds a made-up 40-hex commit (sha1 of the
repo id, no trailing newline) and `datasets--ORG--NAME/snapshots/COMMIT/PATH`
holds plain files. All rows are invented; file paths, column names, Arrow
types and the `huggingface` schema metadata (ClassLabel names) follow the real
files.

| repo id | revision | files (rows) |
|---|---|---|
{table}

## broken/

* `banking77_truncated.parquet`: the first half of the banking77 train fixture
  (no parquet footer; any reader must fail cleanly).
* `banking77_bad_rows.parquet`: valid parquet with the banking77 schema and
  metadata, 6 rows; row 2 (0-based) has a null `label`, row 4 has `label` = 99
  (outside the 77 ClassLabel names); the other rows are valid.
"""


# ==========================================================================
# Verification
# ==========================================================================

EXPECTED_COLUMNS = {
    BANKING77_REPO: ["text:string", "label:int64"],
    CUAD_REPO: ["id:string", "title:string", "context:string", "question:string",
                "answers:struct<text: list<element: string>, answer_start: list<element: int32>>"],
    LEDGAR_REPO: ["text:string", "label:int64"],
    FPB_REPO: ["sentence:string", "label:int64"],
    MEDMCQA_REPO: ["id:string", "question:string", "opa:string", "opb:string", "opc:string", "opd:string",
                   "cop:int64", "choice_type:string", "exp:string", "subject_name:string", "topic_name:string"],
    MBPP_REPO: ["task_id:int32", "text:string", "code:string", "test_list:list<element: string>",
                "test_setup_code:string", "challenge_test_list:list<element: string>"],
}


def verify(manifest: dict) -> None:
    for repo_id, (rev, files) in manifest.items():
        ref = repo_dir(repo_id) / "refs" / rev
        commit = ref.read_bytes().decode("ascii")
        assert commit == commit_for(repo_id) and len(commit) == 40, ref
        for path, nrows in files.items():
            f = repo_dir(repo_id) / "snapshots" / commit / path
            assert f.is_file() and not f.is_symlink(), f
            pf = pq.ParquetFile(f)
            assert pf.metadata.num_rows == nrows, (f, pf.metadata.num_rows, nrows)
            for rg in range(pf.metadata.num_row_groups):
                for c in range(pf.metadata.num_columns):
                    assert pf.metadata.row_group(rg).column(c).compression == "SNAPPY", f
            table = pf.read()
            cols = [f"{fld.name}:{fld.type}" for fld in table.schema]
            assert cols == EXPECTED_COLUMNS[repo_id], (f, cols)
            meta = json.loads(table.schema.metadata[b"huggingface"])
            feats = meta["info"]["features"]
            assert list(feats) == [c.split(":")[0] for c in cols], f
            rows = table.to_pylist()
            for name, feat in feats.items():
                if feat.get("_type") == "ClassLabel":
                    for r in rows:
                        v = r[name]
                        ok = 0 <= v < len(feat["names"]) or (repo_id == MEDMCQA_REPO and "test" in path and v == -1)
                        assert ok, (f, v)
            if repo_id == CUAD_REPO:
                for r in rows:
                    a = r["answers"]
                    assert len(a["text"]) == len(a["answer_start"])
                    for t, s in zip(a["text"], a["answer_start"]):
                        assert r["context"][s : s + len(t)] == t, (r["id"], t)
            if repo_id == MBPP_REPO:
                for r in rows:
                    program = "\n".join([r["test_setup_code"], r["code"], *r["test_list"], *r["challenge_test_list"]])
                    res = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
                    assert res.returncode == 0, (r["task_id"], res.stderr)
    # broken fixtures
    try:
        pq.read_table(BROKEN / "banking77_truncated.parquet")
        raise AssertionError("truncated parquet unexpectedly readable")
    except pa.ArrowInvalid:
        pass
    bad = pq.read_table(BROKEN / "banking77_bad_rows.parquet").column("label").to_pylist()
    assert None in bad and 99 in bad
    # What this script writes (hub/ and broken/) stays small; other fixture folders are not its own.
    total = sum(p.stat().st_size for d in (HUB, BROKEN) for p in d.rglob("*") if p.is_file())
    assert total < 1_000_000, total


def stats(manifest: dict) -> None:
    """Print per-file label / answer statistics (checks the coverage asked for)."""
    from collections import Counter

    snap = lambda repo, path: repo_dir(repo) / "snapshots" / commit_for(repo) / path  # noqa: E731
    for repo, col in ((BANKING77_REPO, "label"), (LEDGAR_REPO, "label"), (FPB_REPO, "label"), (MEDMCQA_REPO, "cop")):
        for path in manifest[repo][1]:
            c = Counter(pq.read_table(snap(repo, path)).column(col).to_pylist())
            print(f"  {repo} {path}: {len(c)} distinct {col} values, min count {min(c.values())}")
            if repo in (BANKING77_REPO, LEDGAR_REPO) and "train" in path:
                assert len(c) >= 8 and sum(1 for n in c.values() if n >= 3) >= 8
            if repo == FPB_REPO:
                assert len(c) == 3 and min(c.values()) >= 15
    for split in ("train", "test"):
        present = absent = 0
        titles = set()
        for path in manifest[CUAD_REPO][1]:
            if f"/{split}/" in path:
                for r in pq.read_table(snap(CUAD_REPO, path)).to_pylist():
                    titles.add(r["title"])
                    if r["answers"]["text"]:
                        present += 1
                    else:
                        absent += 1
        print(f"  cuad {split}: {present} clause-present, {absent} clause-absent, {len(titles)} contracts")
        assert present >= 20 and absent >= 20 and len(titles) >= 2


def main() -> None:
    for d in (HUB, BROKEN):
        if d.exists():
            shutil.rmtree(d)
    HUB.mkdir(parents=True)
    manifest = {
        BANKING77_REPO: (BANKING77_REV, make_banking77()),
        CUAD_REPO: (CUAD_REV, make_cuad()),
        LEDGAR_REPO: (LEDGAR_REV, make_ledgar()),
        FPB_REPO: (FPB_REV, make_fpb()),
        MEDMCQA_REPO: (MEDMCQA_REV, make_medmcqa()),
        MBPP_REPO: (MBPP_REV, make_mbpp()),
    }
    broken = make_broken()
    context = {
        HOTPOT_REPO: (HOTPOT_REV, make_hotpotqa()),
        LONGBENCH_REPO: (LONGBENCH_REV, make_longbench()),
        ETHIC_REPO: (ETHIC_REV, make_ethic()),
        MSMARCO_REPO: (MSMARCO_REV, make_msmarco()),
        FINBENCH_REPO: (FINBENCH_REV, make_financebench()),
    }
    lines = []
    for repo_id, (rev, files) in {**manifest, **context}.items():
        listing = ", ".join(f"`{p}` ({n})" for p, n in files.items())
        lines.append(f"| `{repo_id}` | `{rev}` (commit `{commit_for(repo_id)}`) | {listing} |")
    (FIXTURES / "README.md").write_text(README.format(table="\n".join(lines)))
    verify(manifest)
    verify_context(context)
    stats(manifest)
    for repo_id, (rev, files) in {**manifest, **context}.items():
        print(f"{repo_id} @ {rev} -> {commit_for(repo_id)}")
        for p, n in files.items():
            print(f"    {p}: {n} rows")
    print(f"broken: {broken}")
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    print(f"ok: all fixtures verified; total size {total} bytes")


if __name__ == "__main__":
    main()
