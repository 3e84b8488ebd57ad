// The prompt and result lines of `baton infer`: format detection, both
// input formats parsed field by field, results written in the matching
// format and read back (a round trip), bad lines turned into error records
// naming line and id, and the output file's restart bookkeeping (answered
// ids, a torn last line cut).
#include "launcher/infer_io.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

TEST(InferIo, DetectsTheFormatFromTheFirstLine) {
  EXPECT_EQ(DetectInferFormat(R"({"id": 1, "prompt": "x"})"), InferFormat::kBaton);
  EXPECT_EQ(DetectInferFormat(R"({"custom_id": "a", "method": "POST"})"), InferFormat::kOpenAi);
  EXPECT_EQ(DetectInferFormat("not json"), InferFormat::kBaton);
}

TEST(InferIo, ParsesBatonLines) {
  ParsedLine p = ParseInferLine(
      R"({"id": "q1", "prompt": "Hi", "max_new_tokens": 5, "temperature": 0.5, "top_k": 3, "top_p": 0.9, "seed": 11, "stop": ["\n", "."]})",
      4, InferFormat::kBaton);
  ASSERT_TRUE(p.request) << p.error->message;
  EXPECT_EQ(p.request->id, "q1");
  EXPECT_EQ(p.request->line, 4);
  EXPECT_EQ(p.request->prompt, "Hi");
  EXPECT_EQ(*p.request->max_new_tokens, 5);
  EXPECT_EQ(*p.request->temperature, 0.5);
  EXPECT_EQ(*p.request->top_k, 3);
  EXPECT_EQ(*p.request->top_p, 0.9);
  EXPECT_EQ(*p.request->seed, 11u);
  EXPECT_EQ(p.request->stop, (std::vector<std::string>{"\n", "."}));
  p = ParseInferLine(R"({"id": 7, "tokens": [1, 2, 3], "stop": "END"})", 1, InferFormat::kBaton);
  ASSERT_TRUE(p.request);
  EXPECT_EQ(*p.request->tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(p.request->stop, std::vector<std::string>{"END"});
  EXPECT_FALSE(p.request->max_new_tokens);
}

TEST(InferIo, BadBatonLinesGiveTheReasonLineAndId) {
  struct Case {
    const char* line;
    const char* reason;
    bool has_id;
  };
  const Case cases[] = {
      {R"({"id": 1, "prompt": )", "malformed JSON", false},
      {R"([1, 2])", "must be a JSON object", false},
      {R"({"prompt": "x"})", "no 'id'", false},
      {R"({"id": 1.5, "prompt": "x"})", "'id' must be a string or an integer", false},
      {R"({"id": 2, "prompt": "x", "temperature": "hot"})", "'temperature' must be a number", true},
      {R"({"id": 2, "prompt": "x", "max_new_tokens": 0})", "'max_new_tokens'=0 must be >= 1", true},
      {R"({"id": 2, "prompt": "x", "tokens": [1]})", "exactly one of 'prompt'", true},
      {R"({"id": 2, "prompt": 5})", "'prompt' must be a string", true},
      {R"({"id": 2, "prompt": "x", "stop": [1]})", "'stop' must hold strings", true},
      {R"({"id": 2, "prompt": "x", "temprature": 1})", "unknown field 'temprature'", true},
  };
  for (const Case& c : cases) {
    const ParsedLine p = ParseInferLine(c.line, 9, InferFormat::kBaton);
    ASSERT_TRUE(p.error) << c.line;
    EXPECT_THAT(p.error->message, HasSubstr(c.reason)) << c.line;
    EXPECT_EQ(p.error->line, 9);
    EXPECT_EQ(!p.error->id.is_null(), c.has_id) << c.line;
    const json rec = json::parse(FormatError(InferFormat::kBaton, *p.error));
    EXPECT_EQ(rec["line"], 9);
    EXPECT_THAT(rec["error"].get<std::string>(), HasSubstr(c.has_id ? "line 9 (id 2)" : "line 9:"));
  }
}

TEST(InferIo, ParsesOpenAiLinesAndRefusesChat) {
  const char* ok = R"({"custom_id": "r-1", "method": "POST", "url": "/v1/completions",
      "body": {"model": "tiny", "prompt": "Once", "max_tokens": 8, "temperature": 0, "top_p": 1, "seed": 3, "stop": "\n"}})";
  ParsedLine p = ParseInferLine(ok, 2, InferFormat::kOpenAi);
  ASSERT_TRUE(p.request) << p.error->message;
  EXPECT_EQ(p.request->id, "r-1");
  EXPECT_EQ(p.request->model, "tiny");
  EXPECT_EQ(*p.request->max_new_tokens, 8);
  EXPECT_EQ(*p.request->temperature, 0.0);
  EXPECT_EQ(p.request->stop, std::vector<std::string>{"\n"});
  const char* chat = R"({"custom_id": "r-2", "method": "POST", "url": "/v1/chat/completions",
      "body": {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}})";
  p = ParseInferLine(chat, 3, InferFormat::kOpenAi);
  ASSERT_TRUE(p.error);
  EXPECT_THAT(p.error->message, HasSubstr("/v1/chat/completions is not supported (no chat templates"));
  const json rec = json::parse(FormatError(InferFormat::kOpenAi, *p.error));
  EXPECT_EQ(rec["custom_id"], "r-2");
  EXPECT_TRUE(rec["response"].is_null());
  EXPECT_THAT(rec["error"]["message"].get<std::string>(), HasSubstr("line 3 (id \"r-2\")"));
  p = ParseInferLine(R"({"custom_id": "r-3", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "n": 2}})",
                     4, InferFormat::kOpenAi);
  ASSERT_TRUE(p.error);
  EXPECT_THAT(p.error->message, HasSubstr("body.n must be 1"));
  p = ParseInferLine(R"({"custom_id": 5, "method": "POST", "url": "/v1/completions", "body": {"prompt": "x"}})", 5,
                     InferFormat::kOpenAi);
  ASSERT_TRUE(p.error);
  EXPECT_THAT(p.error->message, HasSubstr("'custom_id' must be a string"));
}

TEST(InferIo, ResultsRoundTripInBothFormats) {
  InferResult res{"hello\xe2\x82", {104, 101}, "length", 4, 0.25, 1.5};  // a cut UTF-8 sequence at the end
  ParsedLine p = ParseInferLine(R"({"id": "a", "prompt": "x"})", 1, InferFormat::kBaton);
  json b = json::parse(FormatResult(InferFormat::kBaton, *p.request, res));
  EXPECT_EQ(b["id"], "a");
  EXPECT_EQ(b["text"].get<std::string>().substr(0, 5), "hello");
  EXPECT_EQ(b["tokens"], json({104, 101}));
  EXPECT_EQ(b["finish_reason"], "length");
  EXPECT_EQ(b["prompt_tokens"], 4);
  EXPECT_EQ(b["completion_tokens"], 2);
  EXPECT_EQ(b["ttft_s"], 0.25);
  EXPECT_EQ(b["latency_s"], 1.5);
  p = ParseInferLine(R"({"custom_id": "c9", "method": "POST", "url": "/v1/completions", "body": {"model": "m", "prompt": "x"}})",
                     1, InferFormat::kOpenAi);
  res.text = "ok";
  res.finish_reason = "stop";
  json o = json::parse(FormatResult(InferFormat::kOpenAi, *p.request, res));
  EXPECT_EQ(o["custom_id"], "c9");
  EXPECT_THAT(o["id"].get<std::string>(), HasSubstr("batch_req_"));
  EXPECT_TRUE(o["error"].is_null());
  EXPECT_EQ(o["response"]["status_code"], 200);
  const json& body = o["response"]["body"];
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["choices"][0]["text"], "ok");
  EXPECT_EQ(body["choices"][0]["index"], 0);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(body["usage"]["prompt_tokens"], 4);
  EXPECT_EQ(body["usage"]["completion_tokens"], 2);
  EXPECT_EQ(body["usage"]["total_tokens"], 6);
}

TEST(InferIo, RestartBookkeepingCutsATornTail) {
  const std::string path = ::testing::TempDir() + "/infer_io_out.jsonl";
  std::remove(path.c_str());
  {
    absl::StatusOr<InferOutput> out = InferOutput::Open(path, true);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->answered().lines, 0);
    ASSERT_TRUE(out->Append(R"({"id": "a", "text": "x"})").ok());
    ASSERT_TRUE(out->Append(R"({"id": 3, "text": "y"})").ok());
    ASSERT_TRUE(out->Append(FormatError(InferFormat::kBaton, {7, nullptr, "malformed JSON"})).ok());
    ASSERT_TRUE(out->Append(R"({"custom_id": "z", "response": null})").ok());
  }
  const std::string good = [&] { std::ifstream in(path); return std::string((std::istreambuf_iterator<char>(in)), {}); }();
  { std::ofstream(path, std::ios::app) << R"({"id": "torn", "te)"; }
  absl::StatusOr<InferOutput> out = InferOutput::Open(path, true);
  ASSERT_TRUE(out.ok());
  const AnsweredSet& a = out->answered();
  EXPECT_TRUE(a.cut_torn_tail);
  EXPECT_EQ(a.lines, 4);
  EXPECT_EQ(a.ids, (std::set<std::string>{"\"a\"", "3", "\"z\""}));
  EXPECT_EQ(a.id_less, std::set<int64_t>{7});
  const std::string after = [&] { std::ifstream in(path); return std::string((std::istreambuf_iterator<char>(in)), {}); }();
  EXPECT_EQ(after, good);  // the torn line is gone, nothing else touched
}

}  // namespace
}  // namespace baton
