#!/usr/bin/env python3
"""Token-for-token parity of baton's BPE tokenizer with HF `tokenizers`.

Builds reference tokenizers without network, on the fortunes corpus:
  gpt2      HF BpeTrainer, ByteLevel(add_prefix_space=False) pre-tokenizer (GPT-2 regex)
  gpt2-pfx  the same model with ByteLevel(add_prefix_space=True)
  llama3    HF BpeTrainer, Split(Llama-3 regex) + ByteLevel(use_regex=False), ignore_merges
  qwen2     HF BpeTrainer, NFC + Split(Qwen2 regex) + ByteLevel(use_regex=False)
  baton     trained by `baton data train-tokenizer`, loaded by HF
then encodes every corpus document and a Unicode stress text with HF and with
`baton data encode`, and requires identical ids; it also compares the
pre-tokens alone over every Unicode code point, and baton's trained merges
with HF's trained on the same corpus. Exit status 0 only when nothing differs.

  python3 scripts/tokenizer_parity.py --baton build/baton [--vocab-size 4096]
  python3 scripts/tokenizer_parity.py --make-fixtures   # rewrites tests/data/bpe_*.json
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORTUNES = "/usr/share/games/fortunes"
GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = LLAMA3_RE.replace(r"\p{N}{1,3}", r"\p{N}")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>"]

STRESS = (
    "Hello, World! It's DON'T I'M WE'RE THEY'VE YOU'LL HE'D she's 'S 'ſ 'Ll\n"
    "Café naïve résumé Ångström Ωμέγα Привет мир, Ελληνικά; עברית ومرحبا हिन्दी\n"
    "日本語のテキスト、中文字符和标点。한국어 텍스트! 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐐀𐐁\n"
    "emoji 😀🎉👍🏽 👨‍👩‍👧‍👦 🇫🇷 ✓ ★ ♥\n"
    "digits 1 12 123 1234 12345 1234567890 ３４５ ٣٤٥ ½ ⅷ ²³ 3.14159 -42 1e10 0x1F\n"
    "spaces:  two   three    four\ttab\t\ttabs \u00a0nbsp \u2003em \u3000ideo end   \n"
    "lines\n\nblank\r\nwindows\r\n\r\nmixed \n \n  \n\t\n"
    "combining: e\u0301 a\u0308 o\u0302 n\u0303 (NFC changes these) \ufb01 ligature\n"
    "punct... ?!?! --- ((()))[]{}<>@#$%^&*_+=|\\/~`\"' ''' \"quoted\" «guillemets» „low”\n"
    "zero\u200bwidth\u200djoiner\ufeffbom soft\u00adhyphen \u2028ls \u2029ps \x0bvt \x0cff \x1cfs \x85nel\n"
    "specials: <|begin_of_text|>inside<|end_of_text|> x<|end_of_text|>  <|begin_of_text|> "
    "<|begin_of_text|><|end_of_text|>\n"
    "trailing spaces and newlines   \n\n\n   "
)


def corpus_files():
    out = []
    for name in sorted(os.listdir(FORTUNES)):
        p = os.path.join(FORTUNES, name)
        if os.path.islink(p) or not os.path.isfile(p) or name.endswith(".dat"):
            continue
        out.append(p)
    return out


def split_documents(data: bytes):
    """runtime/corpus.h SplitDocuments: '%' lines separate documents."""
    docs, begin, pos = [], 0, 0

    def close(end):
        d = data[begin:end]
        if any(c not in b" \t\n\r\f\v" for c in d):
            docs.append(d)
    while pos < len(data):
        eol = data.find(b"\n", pos)
        nxt = len(data) if eol < 0 else eol + 1
        line_end = len(data) if eol < 0 else eol
        if data[pos:line_end] == b"%":
            close(pos)
            begin = nxt
        pos = nxt
    close(len(data))
    return docs


def corpus_documents():
    docs = []
    for f in corpus_files():
        docs += [d.decode("utf-8") for d in split_documents(open(f, "rb").read())]
    return docs


def train_hf(docs, vocab_size, kind):
    tok = Tokenizer(models.BPE(ignore_merges=(kind == "llama3")))
    if kind == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        pattern = LLAMA3_RE if kind == "llama3" else QWEN2_RE
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        if kind == "qwen2":
            tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer)
    tok.add_special_tokens(SPECIALS)  # ids at the end, as baton's trainer puts them
    bos = tok.token_to_id(SPECIALS[0])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIALS[0]} $A", pair=f"{SPECIALS[0]} $A {SPECIALS[0]} $B", special_tokens=[(SPECIALS[0], bos)])
    return tok


def byte_decoder():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def run_baton(baton, args):
    cmd = shlex.split(baton) + args
    r = subprocess.run(cmd, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\n{r.stderr.decode(errors='replace')}")
    return r.stdout.decode()


def write_docs(path, docs):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\n%\n".join(docs) + "\n")
    # corpus.h keeps each line's '\n': the documents baton sees, re-read the same way
    return [d.decode("utf-8") for d in split_documents(open(path, "rb").read())]


def compare_ids(name, tok, baton, tok_path, inputs, docs):
    t0 = time.time()
    out = run_baton(baton, ["data", "encode", "--tokenizer", tok_path, "--input"] + inputs)
    baton_s = time.time() - t0
    ours = [[int(x) for x in line.split()] for line in out.splitlines()]
    theirs = [e.ids for e in tok.encode_batch(docs, add_special_tokens=False)]
    mism = [i for i in range(max(len(ours), len(theirs)))
            if i >= len(ours) or i >= len(theirs) or ours[i] != theirs[i]]
    tokens = sum(len(t) for t in theirs)
    print(f"{name:9s} ids     : {len(theirs):6d} documents, {tokens:8d} tokens compared, "
          f"{len(mism)} mismatches (baton encode {baton_s:.2f} s)")
    for i in mism[:3]:
        a, b = ours[i] if i < len(ours) else None, theirs[i] if i < len(theirs) else None
        print(f"   doc {i}: {docs[i][:80]!r}\n   baton {a[:40] if a else a}\n   hf    {b[:40] if b else b}")
    return len(mism)


def piece_mismatches(tok, baton, tok_path, path, docs):
    dec = byte_decoder()
    out = run_baton(baton, ["data", "encode", "--pieces", "--tokenizer", tok_path, "--input", path])
    ours = [line.split() for line in out.splitlines()]
    bad, pieces = [], 0
    for i, doc in enumerate(docs):
        text = tok.normalizer.normalize_str(doc) if tok.normalizer else doc
        theirs = [bytes(dec[c] for c in p).hex() for p, _ in tok.pre_tokenizer.pre_tokenize_str(text)]
        pieces += len(theirs)
        if i >= len(ours) or ours[i] != theirs:
            bad.append(i)
    return bad, pieces


def icu_unassigned():
    """u_charType(cp) == U_UNASSIGNED in the ICU baton links (ctypes), or None."""
    import ctypes
    import glob
    libs = sorted(glob.glob("/usr/lib/*/libicuuc.so.[0-9]*"))
    if not libs:
        return None
    lib = ctypes.CDLL(libs[0])
    major = libs[0].split(".so.")[1].split(".")[0]
    char_type = getattr(lib, f"u_charType_{major}")
    return lambda cp: char_type(cp) == 0


def compare_pieces(name, tok, baton, tok_path, tmp, chunks):
    """Pre-tokens over every code point; differing chunks are narrowed to code points."""
    path = os.path.join(tmp, "codepoints.txt")
    docs = write_docs(path, [codepoint_line(chunk) for chunk in chunks])
    bad, pieces = piece_mismatches(tok, baton, tok_path, path, docs)
    cps = [cp for i in bad for cp in chunks[i]]
    single_path = os.path.join(tmp, "codepoints_single.txt")
    singles = write_docs(single_path, [codepoint_line([cp]) for cp in cps]) if cps else []
    differing = [cps[i] for i in piece_mismatches(tok, baton, tok_path, single_path, singles)[0]] if cps else []
    unassigned = icu_unassigned()
    known = [cp for cp in differing if unassigned and unassigned(cp)]
    print(f"{name:9s} pieces  : {sum(map(len, chunks))} code points in {len(docs)} documents, {pieces} pre-tokens "
          f"compared, {len(differing)} code points differ, {len(known)} of them unassigned in the system ICU "
          f"(newer Unicode than ICU's tables)")
    if differing:
        print("   differing: " + " ".join(f"U+{cp:04X}" for cp in differing[:24]) + (" ..." if len(differing) > 24 else ""))
    return len(differing) - len(known)


def codepoint_line(cps):
    return "".join(f"x{c}x {c}1{c}{c} '{c} {c}\n" for c in map(chr, cps))


def codepoint_chunks():
    """Every code point but the surrogates, 4096 to a document."""
    cps = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    return [cps[i:i + 4096] for i in range(0, len(cps), 4096)]


def make_fixtures():
    docs = corpus_documents()
    data = os.path.join(REPO, "tests", "data")
    gpt2 = train_hf(docs, 384, "gpt2")
    j = json.loads(gpt2.to_str())
    j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]  # the legacy "a b" form
    j["post_processor"] = None
    with open(os.path.join(data, "bpe_gpt2.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
    llama3 = train_hf(docs, 384, "llama3")
    with open(os.path.join(data, "bpe_llama3.json"), "w", encoding="utf-8") as f:
        json.dump(json.loads(llama3.to_str()), f, ensure_ascii=False, separators=(",", ":"))
    texts = ["Hello, world!", "It's DON'T we're", "Café naïve 日本語 😀", "12345 ٣٤٥ 3.14",
             "a  b\t\tc\r\n\r\nd   ", "<|begin_of_text|>hi<|end_of_text|> x", "the quick brown fox"]
    golden = {"bpe_gpt2.json": [], "bpe_llama3.json": []}
    for name, tok in (("bpe_gpt2.json", Tokenizer.from_file(os.path.join(data, "bpe_gpt2.json"))),
                      ("bpe_llama3.json", llama3)):
        for t in texts:
            golden[name].append({"text": t, "ids": tok.encode(t, add_special_tokens=False).ids})
    with open(os.path.join(data, "bpe_golden.json"), "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(
            f'"{name}": [\n' + ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries) + "\n]"
            for name, entries in golden.items()) + "\n}\n")
    for n in ("bpe_gpt2.json", "bpe_llama3.json", "bpe_golden.json"):
        print(n, os.path.getsize(os.path.join(data, n)), "bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baton", default=os.path.join(REPO, "build", "baton"),
                    help="command that runs baton (may hold arguments)")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--make-fixtures", action="store_true")
    args = ap.parse_args()
    if args.make_fixtures:
        return make_fixtures()

    tmp = tempfile.mkdtemp(prefix="tokenizer_parity_")
    docs = corpus_documents()
    stress_path = os.path.join(tmp, "stress.txt")
    stress_docs = write_docs(stress_path, [STRESS, STRESS.upper(), STRESS.replace("\n", " \r\n ")])
    chunks = codepoint_chunks()
    print(f"corpus: {len(corpus_files())} files, {len(docs)} documents; stress: {len(stress_docs)} documents; "
          f"code points: {len(chunks)} documents; vocab {args.vocab_size}")

    t0 = time.time()
    baton_path = os.path.join(tmp, "baton.json")
    print(run_baton(args.baton, ["data", "train-tokenizer", "--input", FORTUNES, "--vocab-size",
                                 str(args.vocab_size), "--output", baton_path]).strip(),
          f"({time.time() - t0:.2f} s)")
    toks = {}
    t0 = time.time()
    for kind in ("gpt2", "llama3", "qwen2"):
        toks[kind] = train_hf(docs, args.vocab_size, kind)
    print(f"HF trained gpt2, llama3, qwen2 ({time.time() - t0:.2f} s)")
    pfx = Tokenizer.from_str(toks["gpt2"].to_str())
    pfx.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    toks["gpt2-pfx"] = pfx
    toks["baton"] = Tokenizer.from_file(baton_path)

    bad = 0
    for name, tok in toks.items():
        path = baton_path if name == "baton" else os.path.join(tmp, f"{name}.json")
        if name != "baton":
            tok.save(path)
        bad += compare_ids(name, tok, args.baton, path, [FORTUNES, stress_path], docs + stress_docs)
        if name in ("gpt2", "llama3", "qwen2"):
            bad += compare_pieces(name, tok, args.baton, path, tmp, chunks)

    # Trainer parity: baton's merges and vocab against HF's on the same corpus.
    ours, theirs = json.load(open(baton_path)), json.loads(toks["gpt2"].to_str())
    om, tm = ours["model"]["merges"], theirs["model"]["merges"]
    first = next((i for i in range(min(len(om), len(tm))) if om[i] != tm[i]), None)
    same_vocab = ours["model"]["vocab"] == theirs["model"]["vocab"]
    same_added = [(a["id"], a["content"]) for a in ours["added_tokens"]] == \
                 [(a["id"], a["content"]) for a in theirs["added_tokens"]]
    print(f"trainer  : baton {len(om)} merges, HF {len(tm)} merges; "
          f"{'identical merges' if first is None and len(om) == len(tm) else f'first difference at merge {first}'}; "
          f"vocab {'identical' if same_vocab else 'DIFFERENT'}; special ids {'identical' if same_added else 'DIFFERENT'}")
    if first is not None or len(om) != len(tm) or not same_vocab or not same_added:
        bad += 1
    print("PASS" if bad == 0 else f"FAIL ({bad})")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
