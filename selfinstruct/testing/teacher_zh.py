"""A deterministic synthetic teacher that answers the Chinese prompts in Chinese.

It reads the same English labels as `SyntheticTeacher` (the Chinese templates keep
them) and answers with invented Chinese tasks: new instructions, 是/否 classification
answers, labelled and input-first instances. A share of its instructions is made to be
rejected: near copies of the prompt's examples (one character changed, which only a
tokenizer that sees Chinese characters can catch), blacklisted words and too-short
instructions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from selfinstruct.testing.teacher import SyntheticTeacher

_VERBS = (
    "解释", "总结", "描述", "比较", "列举", "建议", "概述", "改写", "评价", "设计",
    "规划", "预测", "论证", "简化", "分析", "推荐", "梳理", "点评", "归纳", "说明",
)  # fmt: skip
_WRITE = ("写", "起草", "创作", "拟写", "撰写")
_ADJECTIVES = (
    "简短", "正式", "俏皮", "详细", "有说服力", "中立", "精炼", "生动", "谨慎", "亲切",
    "专业", "幽默", "平衡", "紧迫", "温和", "循序渐进", "入门级", "深入", "礼貌", "犀利",
    "乐观", "务实", "出人意料", "细致", "大胆", "冷静", "严谨", "随意",
)  # fmt: skip
_NOUNS = (
    "短文", "邮件", "清单", "食谱", "谜语", "时间表", "对话", "标语", "书评", "行程",
    "预算", "教案", "测验", "备忘录", "道歉信", "祝酒词", "报告", "定义", "比喻", "问答",
    "日程", "宣言", "教程", "标题", "寓言", "笑话", "短评", "演讲稿", "说明", "摘要",
)  # fmt: skip
_TOPICS = (
    "火山", "复利", "酸面包", "丝绸之路", "黑洞", "塑料回收", "远程办公", "蜜蜂", "象棋开局",
    "睡眠卫生", "公共图书馆", "自行车修理", "个人所得税", "潮间带", "免疫系统", "供应链",
    "爵士即兴", "质数", "阳台种菜", "冰川", "密码学", "求职面试", "马拉松训练", "古代城墙",
    "电动汽车", "光合作用", "山区天气", "咖啡烘焙", "学外语", "桌游", "洋流", "疫苗",
    "活字印刷", "沙漠生态", "养老储蓄", "排序算法", "时区", "太阳能板", "秦朝", "厨房安全",
    "观鸟", "茶叶", "二十四节气", "高铁", "垃圾分类", "京剧", "围棋", "中医养生",
)  # fmt: skip
_AUDIENCES = (
    "十岁的孩子", "新入职的员工", "退休教师", "持怀疑态度的投资人", "大一新生", "忙碌的父母",
    "博物馆的游客", "软件工程师", "紧张的旅客", "医院志愿者", "本地报纸读者", "农民朋友",
    "读书会成员", "社区居民", "夜班护士", "天文爱好者",
)  # fmt: skip
_LIMITS = (
    "不超过两百字", "分三点说明", "附上一个例子", "用一个比喻开头", "最后给出建议",
    "控制在五句话以内", "先下结论再解释", "避免专业术语", "用问句收尾", "列出要点",
)  # fmt: skip
_FRAMES = (
    "{write}一篇关于{topic}的{adj}{noun}，给{audience}看，{limit}。",
    "用{adj}的语气向{audience}{verb}{topic}，{limit}。",
    "根据下面的笔记，围绕{topic}{write}一份{adj}{noun}。",
    "{verb}{topic}为什么重要，语气要{adj}，{limit}。",
    "{audience}会觉得{topic}的哪三点最{adj2}？请{verb}。",
    "以{topic}为主题，为{audience}{write}一则{noun}，{limit}。",
    "请{verb}{topic}和{topic2}的异同，{limit}。",
)
_BLACKLISTED = ("图片", "图表", "文件", "地图", "视频", "示意图", "音乐")
_CLS_FRAMES = (
    "判断这篇关于{topic}的{noun}是{adj}还是{adj2}。",
    "这句关于{topic}的说法是对还是错？",
    "把关于{topic}的{noun}的情感标为正面、负面或中性。",
    "关于{topic}的这则{noun}最符合哪一类：{adj}、{adj2}还是其他？",
)
_CLS_WORDS = ("判断", "是对还是错", "标为", "哪一类")
_JUDGE_REASONS = {
    1: "输出没有完成指令的要求。",
    2: "指令含糊，大多数输出没有切中要点。",
    3: "任务能用，但有一个输出单薄空泛。",
    4: "任务清楚，输出正确，还可以更充实一些。",
    5: "指令清楚可答，输出正确且有帮助。",
}


@dataclass(frozen=True)
class ChineseSyntheticTeacher(SyntheticTeacher):
    """Answer the Chinese templates with invented Chinese tasks; a handler for the server."""

    def _classify(self, rng: random.Random, prompt: str) -> str:
        if rng.random() < self.garbage_rate:
            return " 也许吧"
        instruction = prompt.rsplit("Task: ", 1)[-1]
        # A Chinese teacher answers 是/否, even when the examples say Yes/No.
        return " 是" if any(w in instruction for w in _CLS_WORDS) else " 否。"

    def _judge_reason(self, score: int) -> str:
        return _JUDGE_REASONS[score]

    def _labelled(self, rng: random.Random, instruction: str) -> str:
        labels = rng.sample(_ADJECTIVES, rng.randint(2, 3))
        out = []
        for label in labels:
            topic = rng.choice(_TOPICS)
            out.append(f"Label: {label}\nInput: 一段关于{topic}的{label}评论。\n")
        return "".join(out) + "\nTask: next"

    def _examples(self, rng: random.Random, instruction: str) -> str:
        out: list[str] = []
        for n in range(1, rng.randint(1, 4) + 1):
            topic = rng.choice(_TOPICS)
            task_input = "(no input)" if rng.random() < 0.3 else f"关于{topic}的几条笔记。"
            if rng.random() < self.empty_output_rate:
                output = ""
            else:
                output = f"一个关于{topic}的{rng.choice(_ADJECTIVES)}回答，第{n}条。"
            out.append(f"Example {n}\nInput: {task_input}\nOutput: {output}\n")
        return "".join(out) + "\nTask: next"

    def _task(self, rng: random.Random, examples: list[str]) -> tuple[str, str, str]:
        roll = rng.random()
        topic = rng.choice(_TOPICS)
        if roll < self.near_duplicate_rate and examples:
            # Change one character of an example: a near copy in any reader's eyes.
            chars = list(rng.choice(examples))
            chars[rng.randrange(len(chars))] = rng.choice("的了和与及或")
            instruction = "".join(chars)
        elif roll < self.near_duplicate_rate + self.blacklist_rate:
            instruction = f"描述一张最能体现{topic}的{rng.choice(_BLACKLISTED)}。"
        elif roll < self.near_duplicate_rate + self.blacklist_rate + self.short_rate:
            instruction = f"{rng.choice(_VERBS)}{topic[:2]}。"
        else:
            frames = _CLS_FRAMES if rng.random() < self.classification_rate else _FRAMES
            instruction = rng.choice(frames).format(
                verb=rng.choice(_VERBS),
                write=rng.choice(_WRITE),
                adj=rng.choice(_ADJECTIVES),
                adj2=rng.choice(_ADJECTIVES),
                noun=rng.choice(_NOUNS),
                topic=topic,
                topic2=rng.choice(_TOPICS),
                audience=rng.choice(_AUDIENCES),
                limit=rng.choice(_LIMITS),
            )
        task_input = ""
        if rng.random() < 0.4:
            task_input = f"笔记：{topic}；{rng.choice(_ADJECTIVES)}；共{rng.randint(2, 99)}项。"
        output = ""
        if rng.random() >= self.empty_output_rate:
            output = (
                f"一篇{rng.choice(_ADJECTIVES)}的{rng.choice(_NOUNS)}，讲{topic}"
                f"（{rng.randint(100, 999)}字），结尾{rng.choice(_ADJECTIVES)}。"
            )
        return instruction, task_input, output


def chinese_synthetic_handler() -> ChineseSyntheticTeacher:
    """Build the Chinese synthetic teacher (for `--handler ...teacher_zh:...`)."""
    return ChineseSyntheticTeacher()
