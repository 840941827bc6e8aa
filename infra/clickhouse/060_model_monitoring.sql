-- Model monitoring (`camcount monitor`, sinks/drift_store.py): drift scores per window, the verdict per window, and
-- the scheduled accuracy evaluations on labelled clips. Only `camcount monitor` writes here. A window evaluated
-- again (a restart, `monitor.backfill_s`) writes the same keys with a later evaluated_ms, and ReplacingMergeTree
-- keeps that one: read with FINAL.

-- One row per window x camera x model version x signal x measure.
-- signal: detections (boxes per frame) | confidence (mean box confidence per frame with boxes); 061 adds box_area and
-- class_mix.
-- measure: psi | jensen_shannon | wasserstein (normalised by the reference's standard deviation).
CREATE TABLE IF NOT EXISTS drift_scores
(
    window_start    DateTime('UTC'),
    window_seconds  UInt32,
    camera_id       LowCardinality(String),
    model_name      LowCardinality(String),
    model_version   LowCardinality(String),
    signal          LowCardinality(String),
    measure         LowCardinality(String),
    score           Float64,
    threshold       Float64,
    above           UInt8,
    evaluated_ms    UInt64
)
ENGINE = ReplacingMergeTree(evaluated_ms)
PARTITION BY toYYYYMM(window_start)
ORDER BY (camera_id, model_name, model_version, window_start, signal, measure);

-- One row per window x camera x model version with frames in the window.
-- status: judged | insufficient-data | no-reference | reference-period. drifted: any signal drifted in the window.
-- active: drift persists after this window (an episode is on); onset: this window started the episode, and the
-- model-health event event_id was published. problem: camera | model | undetermined ('' when not drifted); cause:
-- no-detections | fewer-detections | more-detections | lower-confidence | higher-confidence | drift (061 adds
-- smaller-boxes | larger-boxes | class-mix).
-- empty_share: share of frames without boxes; mean_* are of the window, reference_mean_* of its reference.
CREATE TABLE IF NOT EXISTS drift_windows
(
    window_start              DateTime('UTC'),
    window_seconds            UInt32,
    camera_id                 LowCardinality(String),
    model_name                LowCardinality(String),
    model_version             LowCardinality(String),
    status                    LowCardinality(String),
    drifted                   UInt8,
    drifted_signals           Array(String),
    active                    UInt8,
    onset                     UInt8,
    problem                   LowCardinality(String),
    cause                     LowCardinality(String),
    event_id                  String,
    frames                    UInt32,
    reference_frames          UInt32,
    reference_mode            LowCardinality(String),
    reference_start           DateTime('UTC'),
    reference_end             DateTime('UTC'),
    empty_share               Float32,
    mean_detections           Float32,
    mean_confidence           Float32,
    reference_mean_detections Float32,
    reference_mean_confidence Float32,
    evaluated_ms              UInt64
)
ENGINE = ReplacingMergeTree(evaluated_ms)
PARTITION BY toYYYYMM(window_start)
ORDER BY (camera_id, model_name, model_version, window_start);

-- One row per scheduled evaluation x labelled line, plus a summary row per evaluation with line = '' (all lines,
-- micro-averaged: the values `camcount_model_accuracy_ratio` exports). count_accuracy = 1 - |emitted - labelled| /
-- labelled crossings (at least 0). evaluation_id: one random id per evaluation.
CREATE TABLE IF NOT EXISTS model_accuracy
(
    evaluated_at    DateTime('UTC'),
    evaluated_ms    UInt64,
    evaluation_id   String,
    model_name      LowCardinality(String),
    model_version   LowCardinality(String),
    video           String,
    truth_file      String,
    line            String,
    precision       Float64,
    recall          Float64,
    count_accuracy  Float64,
    labelled        UInt32,
    emitted         UInt32,
    matched         UInt32,
    frames          UInt32,
    seconds         Float64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(evaluated_at)
ORDER BY (model_name, model_version, evaluated_ms, evaluation_id, video, line);
