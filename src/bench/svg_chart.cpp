#include "bench/svg_chart.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "bench/report_text.h"

namespace realizar::bench {
namespace {

using nlohmann::json;

// Okabe & Ito's palette: told apart with every common colour-vision deficiency.
constexpr const char* kColours[] = {"#0072B2", "#E69F00", "#009E73", "#CC79A7",
                                    "#56B4E9", "#D55E00", "#F0E442", "#000000"};
constexpr int kPanelWidth = 250, kPanelHeight = 250, kPanelsPerRow = 4;
constexpr int kPlotLeft = 52, kPlotRight = 12, kPlotTop = 34, kPlotBottom = 40;
constexpr int kHeaderHeight = 58, kLegendRowHeight = 20, kMargin = 10;

std::string escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

struct Bar {
  double value = 0;
  double error = 0;  // half-length of the whisker; 0: none
  int series = 0;    // colour
  std::string label; // under the bar
};

struct Panel {
  std::string title;
  std::string unit;
  std::vector<Bar> bars;
};

// An axis label: "40k" for multiples of 1000, else as few decimals as the step needs.
std::string tick_label(double value, double step) {
  if (value >= 1000 && step >= 1000) return fmt::format("{:g}k", value / 1000);
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step)));
  return fmt::format("{:.{}f}", value, decimals);
}

// Three significant figures: the labels over the bars must fit their width.
std::string short_number(double value) {
  const double magnitude = std::fabs(value);
  if (magnitude >= 100 || magnitude == 0) return fmt::format("{:.0f}", value);
  return fmt::format("{:.{}f}", value, magnitude >= 10 ? 1 : 2);
}

// A step of 1, 2 or 5 times a power of ten giving about four ticks up to `top`.
double tick_step(double top) {
  const double raw = top / 4;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * power >= raw) return m * power;
  }
  return 10 * power;
}

std::string draw_panel(const Panel& p, int x0, int y0) {
  std::string s = fmt::format("<g transform=\"translate({},{})\">\n", x0, y0);
  s += fmt::format("<text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">{}</text>\n",
                   kPanelWidth / 2, escape(p.title));
  const int plot_w = kPanelWidth - kPlotLeft - kPlotRight;
  const int plot_h = kPanelHeight - kPlotTop - kPlotBottom;
  double top = 0;
  for (const Bar& b : p.bars) top = std::max(top, b.value + b.error);
  if (!(top > 0)) top = 1;
  const double step = tick_step(top * 1.08);
  const double axis_top = std::ceil(top * 1.08 / step) * step;
  auto y_of = [&](double v) { return kPlotTop + plot_h - v / axis_top * plot_h; };
  for (double t = 0; t <= axis_top * 1.0001; t += step) {
    s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n",
                     kPlotLeft, kPlotLeft + plot_w, y_of(t), y_of(t));
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\" font-size=\"10\">{}</text>\n",
                     kPlotLeft - 4, y_of(t) + 3, escape(tick_label(t, step)));
  }
  s += fmt::format("<text transform=\"translate(10,{}) rotate(-90)\" text-anchor=\"middle\" font-size=\"10\">{}</text>\n",
                   kPlotTop + plot_h / 2, escape(p.unit));
  // Bars of one group (a test's engines, a percentile's servers) stand together; groups are
  // half a bar apart and labelled once.
  std::vector<double> centres;
  double units = 0;
  for (size_t i = 0; i < p.bars.size(); ++i) {
    if (i > 0 && p.bars[i].label != p.bars[i - 1].label) units += 0.5;
    centres.push_back(units + 0.5);
    units += 1;
  }
  const double slot = plot_w / std::max(units, 1.0);
  const double width = std::min(48.0, slot * 0.8);
  for (size_t i = 0; i < p.bars.size(); ++i) {
    const Bar& b = p.bars[i];
    const double cx = kPlotLeft + slot * centres[i];
    const double y = y_of(b.value);
    s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"><title>{}: {}</title></rect>\n",
                     cx - width / 2, y, width, kPlotTop + plot_h - y, kColours[b.series % 8],
                     escape(b.label), escape(format_number(b.value)));
    if (b.error > 0) {
      const double lo = y_of(std::max(0.0, b.value - b.error)), hi = y_of(b.value + b.error);
      s += fmt::format("<path d=\"M{0:.1f},{1:.1f}V{2:.1f}M{3:.1f},{1:.1f}H{4:.1f}M{3:.1f},{2:.1f}H{4:.1f}\" stroke=\"#222\" stroke-width=\"1.2\" fill=\"none\"/>\n",
                       cx, lo, hi, cx - width / 4, cx + width / 4);
    }
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"{}\">{}</text>\n",
                     cx, y_of(b.value + b.error) - 4, slot < 30 ? 8 : 10, escape(short_number(b.value)));
  }
  for (size_t i = 0; i < p.bars.size();) {
    size_t end = i;
    while (end < p.bars.size() && p.bars[end].label == p.bars[i].label) ++end;
    const double cx = kPlotLeft + slot * (centres[i] + centres[end - 1]) / 2;
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\">{}</text>\n",
                     cx, kPlotTop + plot_h + 14, escape(p.bars[i].label));
    i = end;
  }
  s += fmt::format("<line x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#444\"/>\n", kPlotLeft, kPlotTop, kPlotTop + plot_h);
  s += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" stroke=\"#444\"/>\n", kPlotLeft, kPlotLeft + plot_w, kPlotTop + plot_h);
  return s + "</g>\n";
}

std::string document(const std::string& title, const std::string& subtitle,
                     const std::vector<std::string>& series, const std::vector<Panel>& panels) {
  const int columns = std::min<int>(kPanelsPerRow, static_cast<int>(std::max<size_t>(panels.size(), 1)));
  const int rows = (static_cast<int>(panels.size()) + kPanelsPerRow - 1) / kPanelsPerRow;
  const int width = std::max(columns * kPanelWidth + 2 * kMargin, 520);
  const int legend_y = kHeaderHeight + rows * kPanelHeight + 8;
  const int height = legend_y + kLegendRowHeight * static_cast<int>(series.size()) + kMargin;
  std::string s = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
      "width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      width, height);
  s += fmt::format("<text x=\"{}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n", kMargin, escape(title));
  s += fmt::format("<text x=\"{}\" y=\"42\" font-size=\"11\" fill=\"#444\">{}</text>\n", kMargin, escape(subtitle));
  for (size_t i = 0; i < panels.size(); ++i) {
    s += draw_panel(panels[i], kMargin + static_cast<int>(i % kPanelsPerRow) * kPanelWidth,
                    kHeaderHeight + static_cast<int>(i / kPanelsPerRow) * kPanelHeight);
  }
  for (size_t i = 0; i < series.size(); ++i) {
    const int y = legend_y + static_cast<int>(i) * kLegendRowHeight;
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>\n", kMargin, y, kColours[i % 8]);
    s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>\n", kMargin + 18, y + 10, escape(series[i]));
  }
  return s + "</svg>\n";
}

std::string environment_subtitle(const json& env) {
  std::string where = env["host"]["cpu_model"].get<std::string>();
  const json& gpu = env["gpu"];
  if (gpu.is_object() && !gpu["devices"].empty()) where = gpu["devices"][0]["name"].get<std::string>();
  const std::string commit = env["realizar"]["git_commit"].get<std::string>().substr(0, 10);
  return fmt::format("realizar {} ({}), {}, {}", env["realizar"]["version"].get<std::string>(), commit,
                     where, env["date"].get<std::string>());
}

std::string model_svg(const json& doc) {
  std::vector<std::string> engines = {"realizar (" + doc["backend"].get<std::string>() + ")"};
  for (const json& b : doc["baselines"]) engines.push_back(b["name"].get<std::string>());
  std::vector<Panel> panels;
  for (const json& r : doc["results"]) {
    Panel p{r["test"].get<std::string>(), "tok/s", {}};
    auto add = [&](const json& s, int series, std::string label) {
      p.bars.push_back({s["mean"].get<double>(), s.value("stdev", 0.0), series, std::move(label)});
    };
    add(r["tokens_per_second"], 0, "realizar");
    int series = 1;
    for (const json& b : doc["baselines"]) {
      for (const json& theirs : b["results"]) {
        if (theirs["test"].get<std::string>() == r["test"].get<std::string>()) {
          add(theirs["tokens_per_second"], series, b["name"].get<std::string>());
        }
      }
      ++series;
    }
    panels.push_back(p);
  }
  return document(fmt::format("{}: tok/s, mean ± 1 sd", doc["model_file"]["file_name"].get<std::string>()),
                  environment_subtitle(doc["environment"]), engines, panels);
}

std::string serve_svg(const json& doc) {
  std::vector<std::string> names;
  for (const json& s : doc["servers"]) names.push_back(s["name"].get<std::string>());
  std::vector<Panel> panels;
  for (const auto& [key, title] : {std::pair{"output_throughput", "output tok/s"},
                                   std::pair{"aggregate_decode_throughput", "aggregate decode tok/s"},
                                   std::pair{"request_throughput", "requests/s"}}) {
    Panel p{title, title, {}};
    int series = 0;
    for (const json& s : doc["servers"]) {
      const json& v = s[key];
      p.bars.push_back({v["mean"].get<double>(), v.value("stdev", 0.0), series, names[static_cast<size_t>(series)]});
      ++series;
    }
    panels.push_back(p);
  }
  for (const auto& [key, title] : {std::pair{"ttft_ms", "TTFT"}, std::pair{"itl_ms", "ITL"},
                                   std::pair{"tpot_ms", "TPOT"}, std::pair{"e2e_ms", "E2E latency"}}) {
    Panel p{std::string(title) + " p50 / p95 / p99", "ms", {}};
    for (const char* q : {"p50", "p95", "p99"}) {
      int series = 0;
      for (const json& s : doc["servers"]) {
        const json& v = s[key];
        p.bars.push_back({v.is_object() ? v[q].get<double>() : 0.0, 0.0, series++, q});
      }
    }
    panels.push_back(p);
  }
  const json& w = doc["workload"];
  return document(fmt::format("apr bench serve: {} requests, prompts {}-{}, outputs {}-{} tokens",
                              w["requests"].get<int>(), w["prompt_tokens"]["min"].get<int64_t>(),
                              w["prompt_tokens"]["max"].get<int64_t>(), w["output_tokens"]["min"].get<int64_t>(),
                              w["output_tokens"]["max"].get<int64_t>()),
                  environment_subtitle(doc["environment"]) + "; throughput mean ± 1 sd over runs",
                  names, panels);
}

}  // namespace

std::string svg_chart(const json& doc) {
  return doc["kind"] == "model" ? model_svg(doc) : serve_svg(doc);
}

}  // namespace realizar::bench
