"""One error root with a few meaningful subclasses, and the bilingual messages users see.

Every user-facing error has a stable ``code`` (clients switch on it) and a message in the
user's locale that says what was wrong and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

# code -> (English, Simplified Chinese). Placeholders are filled from ``HealTraceError.params``.
MESSAGES: dict[str, tuple[str, str]] = {
    "invalid_json": (
        "That message was not valid JSON. Send one JSON object per frame.",
        "消息不是有效的 JSON。请每帧发送一个 JSON 对象。",
    ),
    "invalid_event": (
        "That message is missing fields or has wrong ones: {detail}",
        "消息缺少字段或字段有误：{detail}",
    ),
    "unknown_event_type": (
        "Unknown message type '{event_type}'. See docs/protocol.md for the types you can send.",
        "未知的消息类型“{event_type}”。可发送的类型见 docs/protocol.md。",
    ),
    "message_too_long": (
        "Your message is too long ({length} characters; the limit is {limit}). "
        "Please shorten it or split it into parts.",
        "您的消息过长（{length} 个字符，上限为 {limit}）。请缩短或分几次发送。",
    ),
    "frame_too_large": (
        "That frame is too large ({size} bytes; the limit is {limit}).",
        "数据帧过大（{size} 字节，上限为 {limit}）。",
    ),
    "empty_message": (
        "Your message is empty. Please type a question.",
        "消息为空，请输入您的问题。",
    ),
    "auth_required": (
        "An API key is required. Send it in the hello message or the Authorization header.",
        "需要 API 密钥。请在 hello 消息或 Authorization 请求头中提供。",
    ),
    "auth_invalid": (
        "That API key is not valid or has been revoked.",
        "API 密钥无效或已被吊销。",
    ),
    "hello_required": (
        "Send a hello message with your API key first.",
        "请先发送带有 API 密钥的 hello 消息。",
    ),
    "session_not_found": (
        "That conversation was not found. Start a new one.",
        "未找到该会话，请新建会话。",
    ),
    "turn_in_progress": (
        "Please wait for the current answer to finish, or cancel it first.",
        "请等待当前回答结束，或先取消。",
    ),
    "no_turn_running": (
        "There is no answer in progress to cancel.",
        "当前没有正在生成的回答可以取消。",
    ),
    "model_unavailable": (
        "The assistant's language model is unavailable right now. Please try again shortly.",
        "助手的语言模型暂时不可用，请稍后重试。",
    ),
    "model_error": (
        "The assistant's language model returned an unusable response. Please try again.",
        "助手的语言模型返回了无法使用的响应，请重试。",
    ),
    "tool_failed": (
        "A tool the assistant needed ('{tool}') failed. Please try again later.",
        "助手需要的工具（{tool}）出错，请稍后重试。",
    ),
    "tool_approval_needed": (
        "The assistant would like to run '{tool}' for you. It runs only if you approve it.",
        "助手需要为您运行「{tool}」，只有在您同意后才会运行。",
    ),
    "too_many_tool_rounds": (
        "The assistant could not finish within its step limit. Please rephrase your question.",
        "助手未能在步骤上限内完成，请换个说法再问。",
    ),
    "resume_gap": (
        "Some events since your last connection are no longer available; "
        "the conversation was reloaded.",
        "自上次连接以来的部分事件已不可用，会话已重新加载。",
    ),
    "login_failed": (
        "Wrong user name or password.",
        "用户名或密码错误。",
    ),
    "console_login_required": (
        "Please sign in to the clinician console.",
        "请先登录医护工作台。",
    ),
    "handoff_not_found": (
        "That handoff was not found.",
        "未找到该转人工请求。",
    ),
    "handoff_not_waiting": (
        "This conversation is no longer waiting: another clinician has taken it or it was closed.",
        "该会话已不在等待中：已被其他医护人员接管或已结束。",
    ),
    "handoff_not_yours": (
        "Take over this conversation before you reply or hand it back.",
        "请先接管该会话，再回复或交还。",
    ),
    "no_handoff_waiting": (
        "You are not waiting for a person, so there is nothing to cancel.",
        "您当前没有在等待人工服务，无需取消。",
    ),
    "draft_failed": (
        "The assistant could not write a draft just now. Please write your reply yourself.",
        "助手暂时无法生成草稿，请自行撰写回复。",
    ),
    "labs_no_results": (
        "No lab results were found in what you sent. Paste one result per line, "
        "for example 'Potassium 4.2 mmol/L (3.5-5.3)'.",
        "未能从您发送的内容中识别出化验结果。请每行粘贴一项，例如“血钾 4.2 mmol/L (3.5-5.3)”。",
    ),
    "labs_input_too_large": (
        "That is too much text for one lab report (the limit is {limit} characters).",
        "内容过长，超出单份化验单的上限（{limit} 个字符）。",
    ),
    "labs_not_an_image": (
        "That file is not an image we can read. Send a JPEG, PNG or WebP photo of the report.",
        "无法读取该文件。请发送化验单的 JPEG、PNG 或 WebP 照片。",
    ),
    "labs_no_results_in_image": (
        "No lab results could be read in that photo. Photograph the results table flat, in "
        "good light and in focus, or paste the results as text.",
        "未能从照片中读出化验结果。请在光线充足处把结果表格拍平、拍清楚，或直接粘贴文字。",
    ),
    "audio_empty": (
        "No audio was received. Please record again.",
        "没有收到音频，请重新录音。",
    ),
    "audio_corrupt": (
        "The audio could not be read; the file may be truncated or damaged. Please record again.",
        "无法读取音频，文件可能不完整或已损坏。请重新录音。",
    ),
    "audio_unsupported_format": (
        "That audio format is not supported ({detail}). Send WAV, MP3, Ogg/WebM Opus, "
        "MP4/AAC, AMR or SILK.",
        "不支持该音频格式（{detail}）。请发送 WAV、MP3、Ogg/WebM Opus、MP4/AAC、AMR 或 SILK。",
    ),
    "audio_too_large": (
        "The audio file is too large ({size} bytes; the limit is {limit}).",
        "音频文件过大（{size} 字节，上限为 {limit}）。",
    ),
    "audio_too_long": (
        "The recording is too long ({seconds} seconds; the limit is {limit}). "
        "Please send a shorter message.",
        "录音过长（{seconds} 秒，上限为 {limit} 秒）。请缩短后再发送。",
    ),
    "audio_silent": (
        "No speech was heard in the recording. Please speak closer to the microphone.",
        "录音中没有听到说话声。请靠近麦克风再说一次。",
    ),
    "audio_sample_rate_unsupported": (
        "Audio at {rate} Hz is not supported; use 8000, 16000, 24000, 44100 or 48000 Hz.",
        "不支持 {rate} Hz 的音频；请使用 8000、16000、24000、44100 或 48000 Hz。",
    ),
    "audio_frame_invalid": (
        "That audio frame is not valid: a frame is one flags byte (0 or 1) followed by "
        "16-bit PCM samples, so an even number of bytes after the first.",
        "音频帧无效：每帧为 1 个标志字节（0 或 1），后接 16 位 PCM 采样，"
        "即首字节之后应为偶数个字节。",
    ),
    "voice_not_started": (
        "Send audio_start before audio frames.",
        "请先发送 audio_start，再发送音频帧。",
    ),
    "speech_language_unsupported": (
        "Speech in '{language}' cannot be transcribed. Use a language code such as zh or en, "
        "or auto to detect the language.",
        "无法识别“{language}”语言的语音。请使用 zh、en 等语言代码，或用 auto 自动检测。",
    ),
    "speech_text_empty": (
        "There is no text to speak.",
        "没有可朗读的文字。",
    ),
    "speech_text_too_long": (
        "The text is too long to speak ({length} characters; the limit is {limit}).",
        "文字过长，无法朗读（{length} 个字符，上限为 {limit}）。",
    ),
    "speech_unavailable": (
        "Speech is unavailable right now ({detail}). Please type your message instead.",
        "语音功能暂时不可用（{detail}）。请改为输入文字。",
    ),
    "image_empty": (
        "No image was received. Please choose a photo.",
        "没有收到图片，请选择一张照片。",
    ),
    "image_unsupported_format": (
        "That file is not an image HealTrace accepts ({detail}). Send JPEG, PNG, WebP, HEIC "
        "or DICOM.",
        "不支持该文件（{detail}）。请发送 JPEG、PNG、WebP、HEIC 或 DICOM 格式的图片。",
    ),
    "image_too_large": (
        "The image file is too large ({size} bytes; the limit is {limit}).",
        "图片文件过大（{size} 字节，上限为 {limit}）。",
    ),
    "image_too_many_pixels": (
        "The image is too large ({width}×{height} pixels; the limit is {limit} megapixels). "
        "Please send a smaller photo.",
        "图片尺寸过大（{width}×{height} 像素，上限为 {limit} 百万像素）。请发送较小的照片。",
    ),
    "image_corrupt": (
        "The image could not be read; the file may be truncated or damaged. Please send it again.",
        "无法读取该图片，文件可能不完整或已损坏。请重新发送。",
    ),
    "dicom_no_pixels": (
        "This DICOM file has no image data (pixel data) to show or analyse.",
        "该 DICOM 文件不含可显示或分析的图像数据（像素数据）。",
    ),
    "vlm_unavailable": (
        "The image model is unavailable right now ({detail}); the result below comes from "
        "HealTrace's built-in analysis only.",
        "图像模型暂时不可用（{detail}）；以下结果仅来自 HealTrace 内置分析。",
    ),
    "image_not_found": (
        "That image was not found.",
        "未找到该图片。",
    ),
    "evidence_not_found": (
        "No evidence record with that hash was found.",
        "未找到该哈希对应的证据记录。",
    ),
    "evidence_pending": (
        "That evidence record exists but is not anchored on chain yet; try again shortly.",
        "该证据记录已存在，但尚未上链锚定，请稍后再试。",
    ),
    "receipt_malformed": (
        "That receipt is not valid: {detail}",
        "该凭证无效：{detail}",
    ),
    "receipt_chain_mismatch": (
        "The receipt is for chain {expected}, but the node at that address is chain {actual}.",
        "凭证对应的链 ID 为 {expected}，但该节点的链 ID 为 {actual}。",
    ),
    "receipt_not_anchored": (
        "The receipt's Merkle root is not anchored in the registry contract on that chain.",
        "凭证中的默克尔根未在该链的登记合约中锚定。",
    ),
    "receipt_proof_invalid": (
        "The receipt's proof does not lead from the record to the anchored root: the record "
        "or the proof was changed.",
        "凭证中的证明无法从该记录推导到已锚定的根：记录或证明已被改动。",
    ),
    "chain_unavailable": (
        "The blockchain node could not be reached ({detail}).",
        "无法连接区块链节点（{detail}）。",
    ),
    "chain_rejected": (
        "The blockchain node refused the anchoring transaction ({detail}).",
        "区块链节点拒绝了锚定交易（{detail}）。",
    ),
    "evidence_hash_invalid": (
        "An evidence hash is 0x followed by 64 hexadecimal digits.",
        "证据哈希应为 0x 加 64 位十六进制数字。",
    ),
    # Rewards (healtrace/rewards): decisions on a claim, then claims that cannot be judged.
    "reward_awarded": (
        "You earned {amount} HEAL for {title}.",
        "您因“{title}”获得 {amount} HEAL。",
    ),
    "reward_streak_progress": (
        "Recorded: {days} of {streak_days} days in a row for {title}. Keep going to earn "
        "{amount} HEAL.",
        "已记录：“{title}”已连续 {days} 天，共需 {streak_days} 天。坚持下去可获得 {amount} HEAL。",
    ),
    "reward_duplicate_reading": (
        "This reading was already submitted (same values and time); it is not rewarded again.",
        "该读数已提交过（数值和时间相同），不再重复奖励。",
    ),
    "reward_duplicate_submission": (
        "This was already submitted for {title}; it is not rewarded again.",
        "该“{title}”已提交过，不再重复奖励。",
    ),
    "reward_cap_reached": (
        "You have reached the reward limit for {title}. Your record was saved.",
        "“{title}”的奖励已达上限。您的记录已保存。",
    ),
    "reward_cooldown": (
        "{title} can be rewarded again after {available_at}. Your record was saved.",
        "“{title}”需在 {available_at} 之后才能再次获得奖励。您的记录已保存。",
    ),
    "reward_impossible_value": (
        "That reading cannot be right ({detail}). Please check it and enter it again.",
        "该读数不可能正确（{detail}）。请核对后重新输入。",
    ),
    "reward_burst": (
        "Too many submissions in a short time (more than {limit} in {window_min} minutes). "
        "Please wait a while and try again.",
        "短时间内提交过多（{window_min} 分钟内超过 {limit} 次）。请稍后再试。",
    ),
    "reward_consent_required": (
        "Contributing data is rewarded only with your consent: include the consent reference.",
        "贡献数据需经您同意才能获得奖励：请附上同意书编号。",
    ),
    "reward_unknown_type": (
        "'{event_type}' is not a rewarded activity. Rewarded activities: {known}.",
        "“{event_type}”不是可获得奖励的活动。可获得奖励的活动：{known}。",
    ),
    "reward_invalid_event": (
        "That reward claim is missing fields or has wrong ones: {detail}",
        "奖励申请缺少字段或字段有误：{detail}",
    ),
    "reward_event_time_invalid": (
        "The activity's time must be within the last {max_age_h} hours and not in the future.",
        "活动时间须在最近 {max_age_h} 小时内，且不能晚于现在。",
    ),
    "reward_event_conflict": (
        "Event id '{event_id}' was already used for a different claim. Use a new event id for "
        "a new activity.",
        "事件编号“{event_id}”已用于另一项申请。新的活动请使用新的事件编号。",
    ),
    "reward_claim_too_large": (
        "That reward claim is too large ({size} bytes; the limit is {limit}).",
        "奖励申请过大（{size} 字节，上限为 {limit}）。",
    ),
    "reward_patient_required": (
        "No patient is signed in, so no reward can be claimed. Sign in as the patient first.",
        "当前没有已登录的患者，无法申请奖励。请先以患者身份登录。",
    ),
    "reward_patient_forbidden": (
        "This API key acts for another patient.",
        "此 API 密钥只能代表另一位患者操作。",
    ),
    "reward_disabled": (
        "Health rewards are not enabled on this service.",
        "本服务未启用健康奖励。",
    ),
    "fhir_invalid": (
        "That is not a valid FHIR R4 resource: {detail}",
        "这不是有效的 FHIR R4 资源：{detail}",
    ),
    "fhir_bundle_too_large": (
        "That FHIR bundle is too large ({size} bytes; the limit is {limit}). Split it into "
        "smaller bundles.",
        "该 FHIR 数据包过大（{size} 字节，上限为 {limit}）。请拆分成较小的数据包。",
    ),
    "fhir_not_found": (
        "That record was not found.",
        "未找到该记录。",
    ),
    "fhir_unauthorized": (
        "The FHIR server refused HealTrace's credentials (HTTP {status}); check "
        "HEALTRACE_FHIR__TOKEN.",
        "FHIR 服务器拒绝了 HealTrace 的凭据（HTTP {status}）；请检查 HEALTRACE_FHIR__TOKEN。",
    ),
    "fhir_unavailable": (
        "Patient records are unavailable right now ({detail}). Please try again later.",
        "病历暂时无法获取（{detail}）。请稍后重试。",
    ),
    "consent_scope_invalid": (
        "That access scope is not valid ({detail}). Use scopes such as "
        "patient/Observation.rs or patient/Observation.rs?category=laboratory.",
        "访问范围无效（{detail}）。请使用如 patient/Observation.rs 或 "
        "patient/Observation.rs?category=laboratory 的范围。",
    ),
    "consent_duration_invalid": (
        "Access can be granted for 1 to {max} days.",
        "授权期限应为 1 至 {max} 天。",
    ),
    "consent_grantee_invalid": (
        "Access can be granted to the assistant, to yourself, or to clinician:<id>.",
        "只能授权给智能助手、您本人或 clinician:<编号>。",
    ),
    "consent_signature_invalid": (
        "The consent signature is not the patient's own; nothing was changed.",
        "授权签名并非患者本人所签，未做任何更改。",
    ),
    "consent_signature_replayed": (
        "That consent signature was already used; sign the request again.",
        "该授权签名已被使用过，请重新签名。",
    ),
    "consent_signature_expired": (
        "That consent signature has expired; sign the request again.",
        "该授权签名已过期，请重新签名。",
    ),
    "consent_expiry_invalid": (
        "A grant must end in the future.",
        "授权的结束时间必须晚于现在。",
    ),
    "consent_not_found": (
        "No active grant with that id was found.",
        "未找到该编号的有效授权。",
    ),
    "consent_rejected": (
        "The consent registry refused the request ({detail}).",
        "授权登记合约拒绝了该请求（{detail}）。",
    ),
    "key_export_password_weak": (
        "Choose an export password of at least {min} characters.",
        "导出密码至少需要 {min} 个字符。",
    ),
    "patient_invalid": (
        "That patient is not valid: {detail}.",
        "患者信息无效：{detail}。",
    ),
    "patient_exists": (
        "A patient with that FHIR id already exists for this organisation.",
        "本机构已有使用该 FHIR 编号的患者。",
    ),
    "patient_not_found": (
        "That patient was not found.",
        "未找到该患者。",
    ),
    "patient_has_wallet": (
        "This patient signs with their own wallet: send a signed request instead.",
        "该患者使用自己的钱包签名：请提交已签名的请求。",
    ),
    "patient_key_required": (
        "This needs a patient's key (one made with POST /v1/patients).",
        "此操作需要患者密钥（由 POST /v1/patients 创建）。",
    ),
    "tenant_key_required": (
        "This needs an organisation's key, not a patient's.",
        "此操作需要机构密钥，而不是患者密钥。",
    ),
    "records_consent_required": (
        "I may not read your {kinds} records: you have not granted access, or the grant was "
        "revoked or has expired. You can grant access in the consent settings (for example "
        "scope patient/Observation.rs?category=laboratory for lab results) and revoke it at "
        "any time.",
        "我无权读取您的 {kinds} 记录：您尚未授权，或授权已撤销或过期。您可以在授权设置中"
        "授予访问权限（例如化验结果的范围 patient/Observation.rs?category=laboratory），"
        "并可随时撤销。",
    ),
    "records_consent_unverifiable": (
        "I cannot check your consent right now, so I will not read your {kinds} records. "
        "Please try again later.",
        "目前无法核验您的授权，因此不会读取您的 {kinds} 记录。请稍后再试。",
    ),
    "records_no_patient": (
        "No patient is signed in to this conversation, so there are no records to read.",
        "本次对话未关联患者身份，无法读取病历记录。",
    ),
    "key_origin_forbidden": (
        "This key may not be used from this website. The site's owner must add its address "
        "to the key's allowed origins (healtrace keys create --publishable --origin …).",
        "此密钥不能在本网站使用。网站管理者需要把本站地址加入该密钥允许的来源"
        "（healtrace keys create --publishable --origin …）。",
    ),
    "key_scope_forbidden": (
        "A publishable (website) key can only be used to chat. Use a secret key on your "
        "server for this.",
        "可公开的网站密钥只能用于对话。此操作请在服务器端使用私密密钥。",
    ),
    "rate_limited": (
        "Too many messages in a short time. Please wait {retry_after} seconds and try again.",
        "短时间内消息过多。请等待 {retry_after} 秒后再试。",
    ),
    # OpenAI-compatible /v1/chat/completions (healtrace/api/openai_compat.py).
    "chat_request_invalid": (
        "That chat completion request is not valid: {detail}",
        "该对话补全请求无效：{detail}",
    ),
    "chat_messages_empty": (
        "The request has no messages. Send the conversation in 'messages', the user's "
        "question last.",
        "请求中没有消息。请在 messages 中发送对话，并把用户的问题放在最后。",
    ),
    "chat_last_message_not_user": (
        "The last message is from '{role}', not from the user. HealTrace answers the "
        "conversation's last user message: put it last.",
        "最后一条消息来自“{role}”而不是用户。HealTrace 回答对话中最后一条用户消息，"
        "请把它放在最后。",
    ),
    "chat_content_unsupported": (
        "Content of type '{kind}' is not supported here; send text. To ask about a photo, "
        "upload it with POST /v1/images and use the session API (docs/protocol.md).",
        "此处不支持“{kind}”类型的内容，请发送文字。如需咨询照片，请用 POST /v1/images 上传，"
        "并使用会话接口（见 docs/protocol.md）。",
    ),
    "model_not_found": (
        "There is no model '{model}' here. Use the model 'healtrace'.",
        "这里没有名为“{model}”的模型。请使用模型“healtrace”。",
    ),
    "request_too_large": (
        "That request is too large ({size} bytes; the limit is {limit}). Start a new "
        "conversation or send less history.",
        "请求过大（{size} 字节，上限为 {limit}）。请新建对话或减少发送的历史消息。",
    ),
    # WeChat Official Account / WeCom channel (healtrace/api/wechat.py, docs/wechat.md).
    "wechat_disabled": (
        "The WeChat channel is not enabled on this server (HEALTRACE_WECHAT__ENABLED).",
        "本服务未启用微信渠道（HEALTRACE_WECHAT__ENABLED）。",
    ),
    "wechat_signature_invalid": (
        "The WeChat signature does not match. Check that HEALTRACE_WECHAT__TOKEN (and the "
        "EncodingAESKey) are the ones configured in WeChat.",
        "微信签名校验失败。请确认 HEALTRACE_WECHAT__TOKEN（及 EncodingAESKey）与微信后台配置一致。",
    ),
    "wechat_xml_invalid": (
        "That is not a WeChat message this server accepts (malformed XML, or a DTD).",
        "这不是本服务可接受的微信消息（XML 格式错误或含有 DTD）。",
    ),
    "wechat_body_too_large": (
        "That WeChat callback is too large (the limit is HEALTRACE_WECHAT__MAX_BODY_BYTES).",
        "微信回调内容过大（上限为 HEALTRACE_WECHAT__MAX_BODY_BYTES）。",
    ),
    "wechat_welcome": (
        "Welcome to HealTrace, your health assistant. Send a question by text or voice, or a "
        "photo (a lab report, a tongue picture). I am not a doctor: in an emergency call your "
        "local emergency number.",
        "欢迎使用 HealTrace 健康助手。您可以用文字或语音提问，也可以发送照片（化验单、舌象照片）。"
        "我不是医生：如遇紧急情况，请立即拨打 120。",
    ),
    "wechat_consent_help": (
        "Your records are read only with your consent. Ask me, for example, 'may you read my "
        "lab results?' and I will explain what you can grant; you can revoke it at any time.",
        "只有在您授权后我才会读取您的病历记录。您可以问我，例如“你可以查看我的化验结果吗？”，"
        "我会说明可以授予哪些权限；授权可随时撤销。",
    ),
    "wechat_rewards_help": (
        "You earn HEAL points for healthy habits (for example daily steps or a check-up). Tell "
        "me what you did, for example 'I walked 8000 steps today', and I will record it.",
        "保持健康习惯（例如每日步数、按时体检）即可获得 HEAL 积分。告诉我您做了什么，例如"
        "“我今天走了 8000 步”，我会为您记录。",
    ),
    "wechat_unsupported": (
        "Sorry, I cannot read {kind} messages yet. Please send text, a voice message or a photo.",
        "抱歉，暂时无法处理此类消息（{kind}）。请发送文字、语音或图片。",
    ),
    "wechat_voice_unheard": (
        "I could not make out your voice message. Please speak again a little closer, or type.",
        "没有听清您的语音。请靠近一些再说一遍，或直接输入文字。",
    ),
    "wechat_media_failed": (
        "I could not fetch your file from WeChat. Please send it again.",
        "无法从微信获取您发送的文件，请重新发送。",
    ),
    "wechat_api_error": (
        "WeChat's message service could not be reached. Please try again later.",
        "暂时无法连接微信消息服务，请稍后再试。",
    ),
    "internal_error": (
        "Something went wrong on our side. Your message was saved; please try again.",
        "服务器出现问题。您的消息已保存，请重试。",
    ),
}


def localized(
    code: str,
    locale: str,
    *,
    catalogue: Mapping[str, tuple[str, str]] = MESSAGES,
    fallback: str = "internal_error",
    **params: Any,
) -> str:
    """The message for ``code`` in ``locale`` (``zh*`` → Chinese, anything else → English)."""
    en, zh = catalogue.get(code) or catalogue.get(fallback) or MESSAGES["internal_error"]
    template = zh if locale.lower().startswith("zh") else en
    try:
        return template.format(**params)
    except (KeyError, IndexError):
        return str(params.get("detail") or template)


class HealTraceError(Exception):
    """Root of every error HealTrace raises on purpose."""

    code: str = "internal_error"
    #: Where :meth:`message` looks ``code`` up; parts with their own codes bring their own.
    catalogue: ClassVar[Mapping[str, tuple[str, str]]] = MESSAGES
    fallback_code: ClassVar[str] = "internal_error"

    def __init__(self, detail: str = "", *, code: str | None = None, **params: Any) -> None:
        super().__init__(detail or code or self.code)
        if code is not None:
            self.code = code
        self.detail = detail
        self.params = params

    def message(self, locale: str) -> str:
        params = {"detail": self.detail, **self.params}
        return localized(
            self.code, locale, catalogue=self.catalogue, fallback=self.fallback_code, **params
        )


class ConfigurationError(HealTraceError):
    """A setting is missing or wrong; the message names the setting to fix."""

    code = "configuration_error"


class InputError(HealTraceError):
    """The user's or client's input was rejected; safe to show, nothing was stored."""

    code = "invalid_event"


class AuthError(HealTraceError):
    code = "auth_invalid"


class NotFoundError(HealTraceError):
    code = "session_not_found"


class ConflictError(HealTraceError):
    """The request clashes with the current state (someone else acted first)."""

    code = "handoff_not_waiting"


class BackendUnavailable(HealTraceError):
    """A model backend could not be reached (timeouts, 429, 5xx) after its retries."""

    code = "model_unavailable"


class BackendResponseError(HealTraceError):
    """A model backend answered with something unusable (garbage stream, bad tool call)."""

    code = "model_error"


class ToolInfraError(HealTraceError):
    """A tool's infrastructure failed; the turn ends with an error event."""

    code = "tool_failed"
