// The hub module's pure parts: reference parsing and aliases, the listing JSON, picking a model's
// files by quant, split names, the cache layout and manifests, settings from the environment.
// Downloads against a mock hub are tests/python/test_pull.py.
#include "realizar/hub.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "hub/cache.h"
#include "hub/http.h"
#include "hub/repo_listing.h"
#include "realizar/error.h"
#include "test_support.h"

namespace realizar::hub {
namespace {

namespace fs = std::filesystem;
using realizar::testing::TempDir;
using realizar::testing::write_file;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using realizar::testing::error_of;

// Sets an environment variable for the test's duration (restoring the old value).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// ---- references
// ------------------------------------------------------------------------------------

TEST(HubReference, ParsesRepoQuantAndRevision) {
  auto r = parse_model_reference("Qwen/Qwen2.5-Coder-7B-Instruct-GGUF:q4_k_m@refs/pr/1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->repo, "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF");
  EXPECT_EQ(r->quant, "Q4_K_M");
  EXPECT_EQ(r->revision, "refs/pr/1");
  EXPECT_EQ(r->to_string(), "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF:Q4_K_M@refs/pr/1");

  r = parse_model_reference("bartowski/Llama-3.2-1B-Instruct-GGUF");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->quant, "Q4_K_M");
  EXPECT_EQ(r->revision, "main");
  EXPECT_EQ(r->to_string(), "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M");

  r = parse_model_reference("unsloth/Qwen3-8B-GGUF:UD-Q4_K_XL");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->quant, "UD-Q4_K_XL");
}

TEST(HubReference, RejectsWhatIsNotAReference) {
  for (const char* text : {"",
                           "model.gguf",
                           "./models/x.gguf",
                           "/abs/path",
                           "a/b/c",
                           "owner/repo.gguf",
                           "owner/",
                           "/repo",
                           "owner/re po",
                           "own--er/repo",
                           "owner/re..po",
                           "-owner/repo",
                           "owner/repo-",
                           "owner/repo:",
                           "owner/repo:Q4 K",
                           "owner/repo:_Q4",
                           "owner/repo@",
                           "owner/repo@..",
                           "owner/repo@main/",
                           "owner/repo@/x",
                           "qwen2.5-coder:70b"}) {
    EXPECT_FALSE(parse_model_reference(text)) << text;
  }
  EXPECT_FALSE(parse_model_reference(std::string(97, 'a') + "/repo"));  // the hub's 96 limit
  EXPECT_TRUE(parse_model_reference(std::string(96, 'a') + "/repo"));
}

TEST(HubReference, AliasesNameRealReferences) {
  const auto r = parse_model_reference("Qwen2.5-Coder:7B");  // case-insensitive
  ASSERT_TRUE(r);
  EXPECT_EQ(r->to_string(), "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF:Q4_K_M");
  for (const ModelAlias& alias : model_aliases()) {
    const auto target = parse_model_reference(alias.reference);
    ASSERT_TRUE(target) << alias.reference;
    EXPECT_EQ(target->to_string(), alias.reference);  // written canonically in the table
    EXPECT_EQ(parse_model_reference(alias.name)->to_string(), alias.reference);
  }
}

// ---- quant tags and split names
// ------------------------------------------------------------------------

TEST(HubQuant, TagIsAWholeWordOfTheName) {
  EXPECT_TRUE(name_has_quant("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"));
  EXPECT_TRUE(name_has_quant("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"));
  EXPECT_TRUE(name_has_quant("tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf", "q4_k_m"));
  EXPECT_TRUE(name_has_quant("Q8_0/model-Q8_0.gguf", "Q8_0"));
  EXPECT_TRUE(name_has_quant("model_Q8_0.gguf", "Q8_0"));
  EXPECT_TRUE(name_has_quant("Q6_K.gguf", "Q6_K"));
  EXPECT_FALSE(name_has_quant("model-Q4_K_M.gguf", "Q4_K"));    // followed by _M
  EXPECT_FALSE(name_has_quant("model-IQ4_XS.gguf", "Q4_XS"));   // preceded by I
  EXPECT_FALSE(name_has_quant("model-Q4_0_4_4.gguf", "Q4_0"));  // another type
  EXPECT_FALSE(name_has_quant("model-Q4_K_M.gguf", ""));
  EXPECT_FALSE(name_has_quant("q4_k_m-dir/model-F16.gguf", "Q4_K_M"));  // only the file name
}

TEST(HubQuant, SplitNames) {
  const auto split = parse_split_name("Q8_0/model-Q8_0-00002-of-00003.gguf");
  ASSERT_TRUE(split);
  EXPECT_EQ(split->prefix, "Q8_0/model-Q8_0");
  EXPECT_EQ(split->part, 2);
  EXPECT_EQ(split->count, 3);
  EXPECT_FALSE(parse_split_name("model-00004-of-00003.gguf"));
  EXPECT_FALSE(parse_split_name("model-00000-of-00003.gguf"));
  EXPECT_FALSE(parse_split_name("model-0001-of-00003.gguf"));
  EXPECT_FALSE(parse_split_name("-00001-of-00003.gguf"));
  EXPECT_FALSE(parse_split_name("model-00001-of-00003.bin"));
}

// ---- the listing
// ------------------------------------------------------------------------------------

std::string listing_json(const nlohmann::json& siblings) {
  return nlohmann::json{{"id", "Owner/Repo"},
                        {"sha", "0123456789abcdef0123456789ABCDEF01234567"},
                        {"siblings", siblings}}
      .dump();
}

nlohmann::json lfs_file(const std::string& name, uint64_t size) {
  return {{"rfilename", name},
          {"blobId", "ffff"},
          {"size", size},
          {"lfs", {{"sha256", std::string(64, 'A')}, {"size", size}, {"pointerSize", 134}}}};
}

TEST(HubListing, ReadsCommitFilesSizesAndDigests) {
  const RepoListing listing = parse_repo_listing(
      listing_json({{{"rfilename", "README.md"}, {"size", 12}}, lfs_file("m-Q8_0.gguf", 99)}),
      "owner/repo");
  EXPECT_EQ(listing.id, "Owner/Repo");
  EXPECT_EQ(listing.commit, "0123456789abcdef0123456789abcdef01234567");
  ASSERT_EQ(listing.files.size(), 2u);
  EXPECT_EQ(listing.files[0].path, "README.md");
  EXPECT_EQ(listing.files[0].size, 12u);
  EXPECT_EQ(listing.files[0].sha256, "");
  EXPECT_EQ(listing.files[1].size, 99u);
  EXPECT_EQ(listing.files[1].sha256, std::string(64, 'a'));
}

TEST(HubListing, MalformedListingsAreNamedErrors) {
  auto error = [](const std::string& text) {
    return error_of([&] { parse_repo_listing(text, "owner/repo"); });
  };
  EXPECT_THAT(error("[1, 2]"), HasSubstr("the hub's listing of owner/repo is not a JSON object"));
  EXPECT_THAT(error("{\"sha\": 1"), HasSubstr("is not a JSON object"));
  EXPECT_THAT(error(R"({"siblings": []})"), HasSubstr("has no commit (\"sha\")"));
  EXPECT_THAT(error(R"({"sha": "abc", "siblings": []})"), HasSubstr("has no commit"));
  EXPECT_THAT(error(R"({"sha": "0123456789abcdef0123456789abcdef01234567"})"),
              HasSubstr("has no file list (\"siblings\")"));
  EXPECT_THAT(error(listing_json(nlohmann::json::array({{{"size", 1}}}))),
              HasSubstr("has a file without a name"));
  EXPECT_THAT(error(listing_json(nlohmann::json::array({{{"rfilename", "a.gguf"}}}))),
              HasSubstr("gives no size for a.gguf"));
  EXPECT_THAT(error(listing_json(nlohmann::json::array({{{"rfilename", "a.gguf"}, {"size", -3}}}))),
              HasSubstr("gives no size for a.gguf"));
  for (const char* bad : {"../x.gguf", "/etc/x.gguf", "a/../b.gguf", "a\\b.gguf", "a//b.gguf",
                          "dir/", ".", "a\nb.gguf"}) {
    EXPECT_THAT(error(listing_json(nlohmann::json::array({lfs_file(bad, 1)}))),
                HasSubstr("has an unsafe file name"))
        << bad;
  }
  nlohmann::json bad_digest = lfs_file("a.gguf", 1);
  bad_digest["lfs"]["sha256"] = "12ab";
  EXPECT_THAT(error(listing_json(nlohmann::json::array({bad_digest}))),
              HasSubstr("gives no valid SHA-256 for a.gguf"));
}

RepoListing listing_of(const std::vector<std::string>& names) {
  nlohmann::json siblings = nlohmann::json::array();
  for (const std::string& name : names) siblings.push_back(lfs_file(name, 10));
  return parse_repo_listing(listing_json(siblings), "owner/repo");
}

std::vector<std::string> selected(const std::vector<std::string>& names, const std::string& ref) {
  std::vector<std::string> paths;
  for (const RepoFile& f : select_model_files(listing_of(names), *parse_model_reference(ref))) {
    paths.push_back(f.path);
  }
  return paths;
}

TEST(HubSelect, PicksTheQuantSkippingProjectorsAndPreferringASingleFile) {
  const std::vector<std::string> repo = {
      "README.md",
      "model-Q4_K_M.gguf",
      "model-Q4_K_S.gguf",
      "model-Q8_0.gguf",
      "mmproj-model-Q8_0.gguf",
      "big/model-Q6_K-00002-of-00002.gguf",
      "big/model-Q6_K-00001-of-00002.gguf",
      "model-F16-00001-of-00002.gguf",
      "model-F16-00002-of-00002.gguf",
      "model-F16.gguf",
  };
  EXPECT_THAT(selected(repo, "owner/repo"), ElementsAre("model-Q4_K_M.gguf"));
  EXPECT_THAT(selected(repo, "owner/repo:q8_0"), ElementsAre("model-Q8_0.gguf"));
  EXPECT_THAT(selected(repo, "owner/repo:Q6_K"), ElementsAre("big/model-Q6_K-00001-of-00002.gguf",
                                                             "big/model-Q6_K-00002-of-00002.gguf"));
  EXPECT_THAT(selected(repo, "owner/repo:F16"), ElementsAre("model-F16.gguf"));
}

TEST(HubSelect, NoneSeveralOrAMissingPartAreErrorsListingFiles) {
  const ModelReference q2 = *parse_model_reference("owner/repo:Q2_K");
  EXPECT_EQ(error_of([&] {
              select_model_files(listing_of({"a-Q8_0.gguf", "x.txt"}), q2);
            }),
            "repository owner/repo has no GGUF file for Q2_K; its GGUF files: a-Q8_0.gguf (name "
            "one as owner/repo:QUANT)");
  EXPECT_EQ(error_of([&] {
              select_model_files(listing_of({"x.txt", "mmproj-Q2_K.gguf"}), q2);
            }),
            "repository owner/repo has no GGUF files");
  EXPECT_EQ(error_of([&] {
              select_model_files(listing_of({"a-Q2_K.gguf", "b.Q2_K.gguf"}), q2);
            }),
            "repository owner/repo has several GGUF files for Q2_K: a-Q2_K.gguf, b.Q2_K.gguf");
  EXPECT_EQ(error_of([&] {
              select_model_files(
                  listing_of({"m-Q2_K-00001-of-00003.gguf", "m-Q2_K-00003-of-00003.gguf"}), q2);
            }),
            "repository owner/repo: split model m-Q2_K-{1..3}-of-00003.gguf lacks part 2");
}

// ---- cache layout and manifests
// ---------------------------------------------------------------------

TEST(HubCache, DirectoriesAreCaseInsensitiveAndKeepRevisionsApart) {
  TempDir home;
  ScopedEnv env("REALIZAR_HOME", home.path().c_str());
  EXPECT_EQ(model_dir(*parse_model_reference("Qwen/Qwen2.5-0.5B-GGUF:q8_0")),
            home.path() / "models/qwen/qwen2.5-0.5b-gguf/Q8_0");
  EXPECT_EQ(model_dir(*parse_model_reference("Qwen/Qwen2.5-0.5B-GGUF@refs/pr/3")),
            home.path() / "models/qwen/qwen2.5-0.5b-gguf/Q4_K_M@refs%2Fpr%2F3");
}

ModelManifest sample_manifest(const fs::path& dir) {
  ModelManifest m{"owner/repo:Q8_0",
                  "owner/repo",
                  "Q8_0",
                  "main",
                  "0123456789abcdef0123456789abcdef01234567",
                  "https://huggingface.co",
                  {{"m-Q8_0-00001-of-00002.gguf", "d/m-Q8_0-00001-of-00002.gguf", 3, "aa"},
                   {"m-Q8_0-00002-of-00002.gguf", "d/m-Q8_0-00002-of-00002.gguf", 5, "bb"}},
                  "qwen2",
                  "2026-12-01T09:30:00Z",
                  dir};
  return m;
}

TEST(HubCache, ManifestRoundTripAndIntegrity) {
  TempDir dir;
  const ModelManifest m = sample_manifest(dir.path());
  write_manifest(m);
  EXPECT_FALSE(fs::exists(dir / "manifest.json.tmp"));
  const auto back = read_manifest(dir.path());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->reference, m.reference);
  EXPECT_EQ(back->commit, m.commit);
  EXPECT_EQ(back->architecture, "qwen2");
  ASSERT_EQ(back->files.size(), 2u);
  EXPECT_EQ(back->files[1].path_in_repo, "d/m-Q8_0-00002-of-00002.gguf");
  EXPECT_EQ(back->size(), 8u);
  EXPECT_EQ(back->model_path(), dir / "m-Q8_0-00001-of-00002.gguf");
  EXPECT_EQ(back->directory, dir.path());

  EXPECT_EQ(missing_file(*back), "m-Q8_0-00001-of-00002.gguf");
  write_file(dir / "m-Q8_0-00001-of-00002.gguf", "abc");
  write_file(dir / "m-Q8_0-00002-of-00002.gguf", "abcd");  // one byte short
  EXPECT_EQ(missing_file(*back), "m-Q8_0-00002-of-00002.gguf");
  write_file(dir / "m-Q8_0-00002-of-00002.gguf", "abcde");
  EXPECT_EQ(missing_file(*back), "");

  TempDir empty;
  EXPECT_FALSE(read_manifest(empty.path()));
}

TEST(HubCache, BrokenManifestsAreNamedErrors) {
  TempDir dir;
  const fs::path path = dir / "manifest.json";
  auto error = [&](const std::string& text) {
    write_file(path, text);
    return error_of([&] { read_manifest(dir.path()); });
  };
  EXPECT_EQ(error("{"), path.string() + ": not a manifest: malformed JSON");
  EXPECT_EQ(error("{\"format\": 2}"), path.string() + ": not a manifest of format 1");
  nlohmann::json j = nlohmann::json::parse(
      (write_manifest(sample_manifest(dir.path())), realizar::testing::read_file(path)));
  j.erase("commit");
  EXPECT_EQ(error(j.dump()),
            path.string() + ": not a manifest: \"commit\" is missing or not a string");
  j["commit"] = "c";
  j["files"][0]["name"] = "../../etc/passwd";
  EXPECT_THAT(error(j.dump()), HasSubstr("not a manifest: bad file name \"../../etc/passwd\""));
  j["files"] = nlohmann::json::array();
  EXPECT_THAT(error(j.dump()), HasSubstr("\"files\" is missing or empty"));
}

// resolve_model: paths are used as they are; anything else must be a reference.
TEST(HubResolve, ExistingPathsAndBadText) {
  TempDir dir;
  write_file(dir / "model.gguf", "x");
  EXPECT_EQ(resolve_model((dir / "model.gguf").string()), dir / "model.gguf");
  EXPECT_EQ(error_of([] { resolve_model("nope.GGUF"); }), "nope.GGUF: no such file");
  EXPECT_THAT(error_of([] { resolve_model("what is this"); }),
              HasSubstr("what is this: no such file, and not a model reference "
                        "(OWNER/REPO[:QUANT][@REVISION], or an alias such as"));
}

// ---- settings and URLs
// ------------------------------------------------------------------------------

TEST(HubSettings, FromTheEnvironment) {
  {
    ScopedEnv endpoint("HF_ENDPOINT", nullptr), token("HF_TOKEN", nullptr),
        timeout("HF_HUB_DOWNLOAD_TIMEOUT", nullptr);
    const HubSettings s = HubSettings::from_environment();
    EXPECT_EQ(s.endpoint, "https://huggingface.co");
    EXPECT_EQ(s.token, "");
    EXPECT_EQ(s.stall_seconds, 10);
  }
  {
    ScopedEnv endpoint("HF_ENDPOINT", "http://127.0.0.1:8080//"), token("HF_TOKEN", "hf_x"),
        timeout("HF_HUB_DOWNLOAD_TIMEOUT", "2.5");
    const HubSettings s = HubSettings::from_environment();
    EXPECT_EQ(s.endpoint, "http://127.0.0.1:8080");
    EXPECT_EQ(s.token, "hf_x");
    EXPECT_EQ(s.stall_seconds, 3);
  }
  ScopedEnv endpoint("HF_ENDPOINT", "huggingface.co");
  EXPECT_EQ(error_of([] { HubSettings::from_environment(); }),
            "HF_ENDPOINT must start with http:// or https://, got 'huggingface.co'");
  ScopedEnv good_endpoint("HF_ENDPOINT", nullptr);
  for (const char* bad : {"0", "-1", "ten", "5s"}) {
    ScopedEnv timeout("HF_HUB_DOWNLOAD_TIMEOUT", bad);
    EXPECT_EQ(error_of([] { HubSettings::from_environment(); }),
              std::string("HF_HUB_DOWNLOAD_TIMEOUT must be a number of seconds greater than 0, "
                          "got '") +
                  bad + "'");
  }
  ScopedEnv token("HF_TOKEN", "hf_x\r\nX-Evil: 1");
  EXPECT_EQ(error_of([] { HubSettings::from_environment(); }), "HF_TOKEN contains a line break");
}

TEST(HubUrl, Escaping) {
  EXPECT_EQ(url_escape("refs/pr/1", false), "refs%2Fpr%2F1");
  EXPECT_EQ(url_escape("Q8_0/a b+c~.gguf", true), "Q8_0/a%20b%2Bc~.gguf");
  EXPECT_EQ(url_escape("\xC3\xA9", true), "%C3%A9");
}

}  // namespace
}  // namespace realizar::hub
